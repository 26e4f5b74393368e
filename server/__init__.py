"""The SmartInvoicing hub: gRPC services, domain logic, persistence and delivery to FBR."""
