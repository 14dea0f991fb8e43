"""The modelreg HTTP API service: thin routes over the Registry facade."""
