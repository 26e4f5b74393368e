"""Generated protobuf code; do not edit. Source: proto/."""
