"""Finished study -> tidy DataFrame -> tables and figures."""
