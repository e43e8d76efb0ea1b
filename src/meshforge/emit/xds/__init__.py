"""Envoy backend: the resolved model → xDS resources per sidecar node (protobuf, from xds-protos)."""
