"""Everything the hub knows about FBR's Digital Invoicing API.

- ``payload``: the DI request body, field by field, and its mapping to our field names.
- ``rules``: the local validation rule table (shared by the hub and the FBR simulator).
- ``client``: the httpx client that posts invoices and classifies every outcome.
"""
