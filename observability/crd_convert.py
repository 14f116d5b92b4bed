"""Prometheus's and Alertmanager's own configuration in the Prometheus Operator's CRD fields.

- `camel_keys`: snake_case keys to the CRDs' camelCase (`source_labels` -> `sourceLabels`, `group_by` -> `groupBy`);
- `parse_matcher`: an Alertmanager matcher string (`severity="critical"`) to the CRD's `{name, value, matchType}`;
- `alertmanager_config_spec`: an Alertmanager configuration (route tree, inhibit rules, receivers) to an
  AlertmanagerConfig's spec, each webhook's URL replaced by a reference to a Secret key, so that the URLs never
  sit in the repository. Whatever cannot be carried over fails loudly rather than being dropped.
"""

from __future__ import annotations

import re
from typing import Any

# Alertmanager's matcher syntax: a label name, an operator, a value in double quotes (with \" \\ \n escapes) or bare.
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^"\s,{}]*))\s*')
_ESCAPES = {'\\"': '"', "\\\\": "\\", "\\n": "\n"}
# Top-level keys the cluster's Alertmanager owns (its global settings, its template files): not an AlertmanagerConfig's.
CLUSTER_KEYS = {"global", "templates"}
_ROUTE_KEYS = {"receiver", "group_by", "group_wait", "group_interval", "repeat_interval", "matchers", "continue",
               "routes", "mute_time_intervals", "active_time_intervals"}  # fmt: skip
_INHIBIT_KEYS = {"source_matchers", "target_matchers", "equal"}


def camel(key: str) -> str:
    """`send_resolved` -> `sendResolved`."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def camel_keys(value: Any) -> Any:
    """The same value with every mapping key in camelCase (values, such as label names in lists, unchanged)."""
    if isinstance(value, dict):
        return {camel(key): camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_keys(item) for item in value]
    return value


def parse_matcher(text: str) -> dict[str, str]:
    """`alertname=~"A|B"` -> {"name": "alertname", "value": "A|B", "matchType": "=~"}."""
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise ValueError(f"not an Alertmanager matcher: {text!r}")
    name, match_type, quoted, bare = found.groups()
    value = re.sub(r"\\.", lambda escape: _ESCAPES.get(escape[0], escape[0]), quoted) if quoted is not None else bare
    return {"name": name, "value": value, "matchType": match_type}


def _only(keys: set[str], mapping: dict, where: str) -> None:
    unknown = set(mapping) - keys
    if unknown:
        raise ValueError(f"{where}: {sorted(unknown)} cannot be carried into an AlertmanagerConfig (use matchers)")


def _route(route: dict, where: str = "route") -> dict:
    _only(_ROUTE_KEYS, route, where)
    converted = camel_keys({key: value for key, value in route.items() if key not in ("matchers", "routes")})
    if "matchers" in route:
        converted["matchers"] = [parse_matcher(text) for text in route["matchers"]]
    if "routes" in route:
        converted["routes"] = [_route(child, f"{where}.routes[{i}]") for i, child in enumerate(route["routes"])]
    return converted


def _inhibit_rule(rule: dict, where: str) -> dict:
    _only(_INHIBIT_KEYS, rule, where)
    converted: dict[str, Any] = {}
    for side, field in (("source_matchers", "sourceMatch"), ("target_matchers", "targetMatch")):
        if side in rule:
            converted[field] = [parse_matcher(text) for text in rule[side]]
    if "equal" in rule:
        converted["equal"] = list(rule["equal"])
    return converted


def webhook_key(receiver: str, index: int, count: int) -> str:
    """The Secret key of a receiver's webhook: its name, suffixed by the position when it has several."""
    return receiver if count == 1 else f"{receiver}-{index}"


def _receiver(receiver: dict, secret: str) -> dict:
    converted = camel_keys({key: value for key, value in receiver.items() if key != "webhook_configs"})
    webhooks = receiver.get("webhook_configs", [])
    if webhooks:
        converted["webhookConfigs"] = []
        for index, webhook in enumerate(webhooks):
            kept = camel_keys({key: value for key, value in webhook.items() if key not in ("url", "url_file")})
            key = webhook_key(receiver["name"], index, len(webhooks))
            converted["webhookConfigs"].append({"urlSecret": {"name": secret, "key": key}, **kept})
    return converted


def alertmanager_config_spec(config: dict, secret: str) -> dict:
    """The AlertmanagerConfig spec of an Alertmanager configuration; webhook URLs become keys of Secret `secret`."""
    _only({"route", "receivers", "inhibit_rules"} | CLUSTER_KEYS, config, "alertmanager.yml")
    spec: dict[str, Any] = {"route": _route(config["route"])}
    if config.get("inhibit_rules"):
        spec["inhibitRules"] = [
            _inhibit_rule(rule, f"inhibit_rules[{i}]") for i, rule in enumerate(config["inhibit_rules"])
        ]
    spec["receivers"] = [_receiver(receiver, secret) for receiver in config["receivers"]]
    return spec


def webhook_keys(spec: dict) -> list[str]:
    """The Secret keys an AlertmanagerConfig spec's webhooks read their URLs from."""
    return [
        webhook["urlSecret"]["key"] for receiver in spec["receivers"] for webhook in receiver.get("webhookConfigs", [])
    ]
