"""Services: take a session, load, call the pure domain rules, save. One module per business object."""
