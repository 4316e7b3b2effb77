"""Browser safety and request size: JSON-only POSTs, no GET mutations, CORS, body limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import func, select

from enrolink.settings import Settings
from models.tables import Unit
from tests.access.conftest import client_for
from tests.api.conftest import GraphQLClient

CREATE_UNIT = 'mutation { createUnit(input: {code: "GRD1", title: "Guard unit"}) { unit { id } } }'
PORTAL = "https://portal.example.org"
BODY_LIMIT = 2048


async def _unit_count(graphql: GraphQLClient) -> int:
    async with graphql.app.state.enrolink.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Unit)) or 0)


def _auth(graphql: GraphQLClient, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {graphql.token}", **headers}


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain", json.dumps({"query": CREATE_UNIT})),
        ("application/x-www-form-urlencoded", "query=" + CREATE_UNIT),
        (
            "multipart/form-data; boundary=x",
            '--x\r\nContent-Disposition: form-data; name="query"\r\n\r\n'
            f"{CREATE_UNIT}\r\n--x--\r\n",
        ),
        ("application/jsonp", json.dumps({"query": CREATE_UNIT})),
        ("", json.dumps({"query": CREATE_UNIT})),
    ],
)
async def test_post_other_than_json_rejected(
    graphql: GraphQLClient, content_type: str, content: str
) -> None:
    response = await graphql.http.post(
        "/graphql", content=content, headers=_auth(graphql, **{"Content-Type": content_type})
    )

    assert response.status_code == 415
    assert response.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert await _unit_count(graphql) == 0


async def test_json_with_charset_accepted(graphql: GraphQLClient) -> None:
    response = await graphql.http.post(
        "/graphql",
        content=json.dumps({"query": CREATE_UNIT}),
        headers=_auth(graphql, **{"Content-Type": "application/json; charset=utf-8"}),
    )

    assert response.status_code == 200
    assert await _unit_count(graphql) == 1


async def test_get_mutation_rejected(graphql: GraphQLClient) -> None:
    response = await graphql.http.get(
        "/graphql", params={"query": CREATE_UNIT}, headers=_auth(graphql)
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert "mutations are not allowed when using GET" in error["message"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert await _unit_count(graphql) == 0


async def test_malformed_json_gets_json_error(graphql: GraphQLClient) -> None:
    response = await graphql.http.post(
        "/graphql",
        content='{"query": ',
        headers=_auth(graphql, **{"Content-Type": "application/json"}),
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["errors"][0]
    assert error["message"] == (
        "The request contains invalid JSON: Expecting value at line 1, column 11. Send a POST "
        'body as a JSON object with the document in its query field, such as {"query": '
        '"{ __typename }"}.'
    )
    assert error["extensions"]["code"] == "BAD_REQUEST"


async def test_get_invalid_variables_json_error(graphql: GraphQLClient) -> None:
    response = await graphql.http.get(
        "/graphql",
        params={"query": "{ partners { code } }", "variables": "{"},
        headers=_auth(graphql),
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["message"].startswith("The request contains invalid JSON: ")
    assert error["extensions"]["code"] == "BAD_REQUEST"


async def test_body_without_query_gets_json_error(graphql: GraphQLClient) -> None:
    response = await graphql.http.post(
        "/graphql",
        content=json.dumps({"variables": {}}),
        headers=_auth(graphql, **{"Content-Type": "application/json"}),
    )

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["message"] == "No GraphQL query found in the request"
    assert error["extensions"]["code"] == "BAD_REQUEST"


async def test_get_query_with_token_served(graphql: GraphQLClient) -> None:
    response = await graphql.http.get(
        "/graphql", params={"query": "{ partners { code } }"}, headers=_auth(graphql)
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"partners": []}}


@pytest.fixture
async def limited(settings_for: Callable[..., Settings]) -> AsyncIterator[GraphQLClient]:
    async with client_for(
        settings_for(environment="production", max_body_bytes=BODY_LIMIT)
    ) as graphql:
        yield graphql


def _padded_body(size: int) -> bytes:
    body = json.dumps({"query": "{ partners { code } }", "variables": {"pad": ""}})
    return body.replace('"pad": ""', '"pad": "' + "x" * (size - len(body)) + '"').encode()


async def test_body_over_limit_rejected(limited: GraphQLClient) -> None:
    response = await limited.http.post(
        "/graphql",
        content=_padded_body(BODY_LIMIT + 1),
        headers=_auth(limited, **{"Content-Type": "application/json"}),
    )

    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert str(BODY_LIMIT) in response.json()["errors"][0]["message"]


async def test_streamed_body_over_limit_rejected(limited: GraphQLClient) -> None:
    body = _padded_body(BODY_LIMIT + 500)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    response = await limited.http.post(
        "/graphql", content=chunks(), headers=_auth(limited, **{"Content-Type": "application/json"})
    )

    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert response.status_code == 413


async def test_body_at_limit_accepted(limited: GraphQLClient) -> None:
    response = await limited.http.post(
        "/graphql",
        content=_padded_body(BODY_LIMIT),
        headers=_auth(limited, **{"Content-Type": "application/json"}),
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"partners": []}}


async def test_graphiql_page_off_in_production(limited: GraphQLClient) -> None:
    response = await limited.http.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 401


@pytest.fixture
async def portal(settings_for: Callable[..., Settings]) -> AsyncIterator[GraphQLClient]:
    async with client_for(settings_for(cors_origins=[PORTAL])) as graphql:
        yield graphql


async def test_cors_preflight_allows_configured_origin(portal: GraphQLClient) -> None:
    response = await portal.http.options(
        "/graphql",
        headers={
            "Origin": PORTAL,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


async def test_cors_preflight_rejects_other_origin(portal: GraphQLClient) -> None:
    response = await portal.http.options(
        "/graphql",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_cors_headers_on_unauthenticated_response(portal: GraphQLClient) -> None:
    response = await portal.http.post(
        "/graphql", json={"query": "{ partners { code } }"}, headers={"Origin": PORTAL}
    )

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == PORTAL
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()


async def test_no_cors_headers_when_unconfigured(graphql: GraphQLClient) -> None:
    response = await graphql.http.post(
        "/graphql",
        json={"query": "{ partners { code } }"},
        headers=_auth(graphql, Origin=PORTAL),
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
