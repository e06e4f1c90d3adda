"""Scripted emergency drills: the record of each drill, its reports for auditors, approvals of live drills,
sign-off and findings."""
