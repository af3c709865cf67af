"""Schemathesis hooks for the OpenAPI run: Glance's JSON-patch media type is JSON."""

import schemathesis

schemathesis.serializer.alias("application/openstack-images-v2.1-json-patch", "application/json")
