"""The OpenAPI schema at /api/schema/: JSON by default, YAML with ``?format=yaml``.

Apart from platform_site.schema, which DRF imports (DEFAULT_SCHEMA_CLASS) while drf_spectacular.views loads.
"""

from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView


class SchemaView(SpectacularAPIView):
    # The first renderer is the default: application/json. ``?format=yaml`` or an Accept header picks YAML.
    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]
