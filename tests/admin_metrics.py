"""Parses a /metrics scrape (stdin) with the official Prometheus Python
parsers and prints every sample as JSON so the Rust test can compare them
with the daemon's own summary. Both parsers read the same text: the
Prometheus text parser (`prometheus_client.parser`) and the OpenMetrics
parser (the format the endpoint declares). Exits non-zero if either fails
or if they disagree on a sample value."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

text = sys.stdin.read()


def samples(families):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


prom = list(prometheus_families(text))
om = list(openmetrics_families(text))
a, b = samples(prom), samples(om)
if a != b:
    sys.exit(f"parsers disagree: only prometheus {set(a.items()) - set(b.items())}, only openmetrics {set(b.items()) - set(a.items())}")
json.dump(
    {
        "types": {f.name: f.type for f in om},
        "samples": [[s.name, s.labels, s.value] for f in prom for s in f.samples],
    },
    sys.stdout,
)
