"""Who may use the hub: tenants, API keys, accounts."""
