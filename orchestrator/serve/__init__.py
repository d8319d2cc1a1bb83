"""The front door: admission, the engine's request phases, background loops, metrics, and the
gRPC endpoint that ties them together (``grpc_service.serve``)."""
