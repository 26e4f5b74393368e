"""The API edge: servicers, protobuf conversion, errors, auth, cursors, TLS."""
