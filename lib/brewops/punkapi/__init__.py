"""The Punk API, both sides: a client for any v2 or v3 server and a faithful local server."""
