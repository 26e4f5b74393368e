"""Domain logic: ingest, delivery to FBR, results. No gRPC here."""
