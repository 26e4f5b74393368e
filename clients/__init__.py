"""Clients of the hub: the FBR API client, the FBR simulator and the hub SDK for ERPs."""
