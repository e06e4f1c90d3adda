"""Pure business rules: dataclasses and Decimal, no database, no request."""
