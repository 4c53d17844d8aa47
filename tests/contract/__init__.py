"""The executor contract: one suite run against every worker type."""
