"""The invoice path: intake, validation, the outbox, delivery to FBR, results."""
