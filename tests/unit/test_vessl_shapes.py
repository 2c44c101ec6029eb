"""The recorded API shapes (tests/fixtures/vessl_api_shapes.json) still match the installed vessl SDK."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest

SHAPES = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "vessl_api_shapes.json").read_text())


@pytest.fixture(scope="module")
def apiv1(tmp_path_factory):
    # Importing vessl builds a client that calls the API when it finds a token: point it at a dead loopback
    # port with no token/config so this test never touches the network.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VESSL_API_HOST", "http://127.0.0.1:9")
        mp.setenv("VESSL_CONFIG_PATH", str(tmp_path_factory.mktemp("vessl") / "config"))
        mp.delenv("VESSL_ACCESS_TOKEN", raising=False)
        return importlib.import_module("vessl.openapi_client.api.apiv1_api").APIV1Api


@pytest.mark.parametrize("name", sorted(SHAPES["routes"]))
def test_route_and_fields_match_sdk(apiv1, name: str) -> None:
    route = SHAPES["routes"][name]
    source = inspect.getsource(getattr(apiv1, f"{name}_with_http_info"))
    assert f"'{route['path']}', '{route['method']}'" in source
    assert f'200: "{route["response_model"]}"' in source
    models = importlib.import_module("vessl.openapi_client.models")
    for model_key, fields_key in (("response_model", "response_fields"), ("request_model", "request_fields"),
                                  ("item_model", "item_fields")):
        if model_key in route:
            declared = set(getattr(models, route[model_key]).attribute_map.values())
            assert set(route[fields_key]) <= declared, (name, route[model_key])
    for param in route.get("query", []):
        assert f"('{param}', local_var_params['{param}'])" in source


def test_sdk_reads_api_host_from_env_and_sends_token_header(apiv1) -> None:
    constant = inspect.getsource(importlib.import_module("vessl.util.constant"))
    api = inspect.getsource(importlib.import_module("vessl.util.api"))
    assert 'envvar.get("VESSL_API_HOST"' in constant
    assert 'f"Token {access_token}"' in api and SHAPES["auth_header"].startswith("Authorization: Token")
