"""One adapter per outside thing: the database, the tokens file."""
