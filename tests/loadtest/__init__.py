"""Load tests of the service: the Locust scenarios, distributed runs, the soak and the benchmark's smoke test
(wrk, h2load), each against a real `bentoml serve`. They measure latency and throughput, so they are marked
`serial`: `make test` runs them alone, after the parallel step.
"""
