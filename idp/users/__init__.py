"""The user directory: normalised identifiers, registration, password checks and changes."""
