"""FBR's POS fiscal channel for Tier-1 retailers: the IMS ``Live/PostData`` API.

See docs/fbr-coverage.md §6.

- ``payload``: the normalised POS invoice ⇄ the IMS body; the Re 1 service fee.
- ``rules``: local IMS rules (shared with the simulator).
- ``responses``: classification of ``Code 100 / 102`` answers and gateway faults.

The HTTP call itself is :meth:`clients.fbr.client.FbrClient.post_pos_invoice` (one FBR
client per process serves both channels).
"""
