"""Signed preview links at the edge (CONTRACT §5.5): Envoy's own JWT and RBAC filters check every request to a
preview host; meshforge's code never reads a token.

Input: the edge's `PreviewAuth` (the public keys as a JWKS), a preview host's routing key and its `notBefore`.
Output: the two HTTP filters of the edge's chain (the same for every key: the listener does not change when keys
come and go), the per-route configurations a preview virtual host carries, the route that turns a link into a
cookie, and the local-reply mapping that answers a refused request with a short page.

- jwt_authn checks the signature (ES256, keys by kid), the issuer and the expiry (with at most `max_ttl` between
  issue and expiry), taking the token from `Authorization: Bearer`, the link's query parameter or the cookie; its
  payload goes to dynamic metadata.
- RBAC, per preview virtual host: the payload's audience must name this host's key, and when the key has a
  `notBefore`, its `iat` must not be earlier. Both lookups are O(1): a virtual host is found by its exact domain.
- A valid link (`?meshforge-preview-token=...`) is answered with a redirect to the same path without it and a
  cookie for that host, so the page's assets and API calls carry the token too.
"""

from __future__ import annotations

from datetime import datetime

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, number_pb2, regex_pb2, string_pb2, value_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from ...model import PreviewAuth
from ...preview import COOKIE, ISSUER, TOKEN_PARAM, audience
from .resources import _any

JWT_FILTER = "envoy.filters.http.jwt_authn"
RBAC_FILTER = "envoy.filters.http.rbac"
PROVIDER = "meshforge"
REQUIREMENT = "preview"
PAYLOAD = "jwt_payload"
CLOCK_SKEW_SECONDS = 5
JWT_CACHE_SIZE = 1024  # verified tokens each worker keeps
_JWT_SHAPE = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"  # what the link's parameter must look like
REFUSED_BODY = ("meshforge: this preview needs a signed link. Ask whoever shared it for a link made with "
                "`meshforge preview link`; a link that expired or was revoked needs a new one.\n")


def jwt_filter(auth: PreviewAuth) -> hcm_pb2.HttpFilter:
    provider = jwt_pb2.JwtProvider(
        issuer=ISSUER, local_jwks=base_pb2.DataSource(inline_string=auth.jwks),
        from_headers=[jwt_pb2.JwtHeader(name="authorization", value_prefix="Bearer ")],
        from_params=[TOKEN_PARAM], from_cookies=[COOKIE],
        forward=True,  # the link's route copies the parameter into the cookie: it must stay in the request
        payload_in_metadata=PAYLOAD, clock_skew_seconds=CLOCK_SKEW_SECONDS, require_expiration=True,
        max_lifetime=duration_pb2.Duration(seconds=auth.max_ttl + CLOCK_SKEW_SECONDS),
        # a token verified once is not verified again (per worker; its expiry still applies): ES256 costs ~1 ms
        jwt_cache_config=jwt_pb2.JwtCacheConfig(jwt_cache_size=JWT_CACHE_SIZE))
    config = jwt_pb2.JwtAuthentication(
        providers={PROVIDER: provider},
        requirement_map={REQUIREMENT: jwt_pb2.JwtRequirement(provider_name=PROVIDER)})
    return hcm_pb2.HttpFilter(name=JWT_FILTER, typed_config=_any(config))


def rbac_filter() -> hcm_pb2.HttpFilter:
    """No rules of its own: only the preview virtual hosts' per-route rules apply (the public hosts are open)."""
    return hcm_pb2.HttpFilter(name=RBAC_FILTER, typed_config=_any(rbac_pb2.RBAC()))


def _payload(claim: str, value: value_pb2.ValueMatcher) -> rbac_config_pb2.Principal:
    return rbac_config_pb2.Principal(sourced_metadata=rbac_config_pb2.SourcedMetadata(
        metadata_matcher=metadata_pb2.MetadataMatcher(
            filter=JWT_FILTER, path=[metadata_pb2.MetadataMatcher.PathSegment(key=PAYLOAD),
                                     metadata_pb2.MetadataMatcher.PathSegment(key=claim)], value=value)))


def _for_key(key: str, not_before: datetime | None) -> rbac_config_pb2.Principal:
    aud = value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(exact=audience(key)))
    ids = [rbac_config_pb2.Principal(or_ids=rbac_config_pb2.Principal.Set(ids=[
        _payload("aud", aud),
        _payload("aud", value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=aud)))]))]
    if not_before is not None:
        ids.append(_payload("iat", value_pb2.ValueMatcher(double_match=number_pb2.DoubleMatcher(
            range=range_pb2.DoubleRange(start=float(int(not_before.timestamp())), end=1e18)))))
    return rbac_config_pb2.Principal(and_ids=rbac_config_pb2.Principal.Set(ids=ids))


def per_route(key: str | None, not_before: datetime | None = None) -> dict:
    """The typed_per_filter_config of a preview virtual host: a valid token, and (for a key's host) one whose
    audience is that key, issued at or after its notBefore. `key` None: the unknown-preview host (any valid token:
    who has none learns nothing about which keys exist)."""
    out = {JWT_FILTER: _any(jwt_pb2.PerRouteConfig(requirement_name=REQUIREMENT))}
    if key is not None:
        policy = rbac_config_pb2.Policy(permissions=[rbac_config_pb2.Permission(any=True)],
                                        principals=[_for_key(key, not_before)])
        out[RBAC_FILTER] = _any(rbac_pb2.RBACPerRoute(rbac=rbac_pb2.RBAC(rules=rbac_config_pb2.RBAC(
            action=rbac_config_pb2.RBAC.ALLOW, policies={"signed-link": policy}))))
    return out


def signed(vh: route_components_pb2.VirtualHost, key: str | None,
           not_before: datetime | None = None) -> route_components_pb2.VirtualHost:
    """A preview virtual host (`resources.preview_virtual_host`, or the unknown-preview one for `key` None) that
    admits only signed links: the per-route checks, and (for a key's host) the route that turns a link into a
    cookie ahead of its own. Without a valid link, an unknown key's host looks like a known one's: a 401."""
    if key is not None:
        vh.routes.insert(0, link_route())
    for name, config in per_route(key, not_before).items():
        vh.typed_per_filter_config[name].CopyFrom(config)
    return vh


def link_route() -> route_components_pb2.Route:
    """`?meshforge-preview-token=<a JWT>` (already checked by jwt_authn and RBAC): a redirect to the same path
    without the query, setting the token as a cookie for this host."""
    cookie = f"{COOKIE}=%QUERY_PARAM({TOKEN_PARAM})%; Path=/; HttpOnly; Secure; SameSite=Lax"
    return route_components_pb2.Route(
        name="signed-link",
        match=route_components_pb2.RouteMatch(prefix="/", query_parameters=[route_components_pb2.QueryParameterMatcher(
            name=TOKEN_PARAM, string_match=string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=_JWT_SHAPE)))]),
        redirect=route_components_pb2.RedirectAction(strip_query=True,
                                                     response_code=route_components_pb2.RedirectAction.FOUND),
        response_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="set-cookie", value=cookie),
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD)])


def refused_mapper() -> hcm_pb2.ResponseMapper:
    """Envoy's own refusals (jwt_authn's 401, RBAC's 403) become one 401 page; applications' answers are not
    local replies and pass untouched."""
    def status(code: int) -> accesslog_pb2.AccessLogFilter:
        return accesslog_pb2.AccessLogFilter(status_code_filter=accesslog_pb2.StatusCodeFilter(
            comparison=accesslog_pb2.ComparisonFilter(op=accesslog_pb2.ComparisonFilter.EQ, value=base_pb2.RuntimeUInt32(
                default_value=code, runtime_key=f"meshforge.preview_refused_{code}"))))
    return hcm_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(or_filter=accesslog_pb2.OrFilter(filters=[status(401), status(403)])),
        status_code=wrappers_pb2.UInt32Value(value=401), body=base_pb2.DataSource(inline_string=REFUSED_BODY),
        body_format_override=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string="%LOCAL_REPLY_BODY%"), content_type="text/plain"),
        headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="www-authenticate", value='Bearer realm="meshforge-preview"'),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)])
