"""Pure conversions between protobuf messages and the domain's forms."""
