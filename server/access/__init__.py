"""Who may use the hub: roles, tenants, API keys and platform accounts.

Every administrative act here is audited in the same transaction as the change.
"""
