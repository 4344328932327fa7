"""What a benchmark run found: the ratios to the raw limits, the verdict against the targets, the printout."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_SAGAS_PER_SECOND = 200
TARGET_P99_MS = 100


def ratios(raw: dict | None, fund: dict | None) -> dict:
    if not raw or not fund:
        return {}
    rt = raw["kafka"]["round_trip_ms"]
    pg = raw["postgres"]
    commit = pg["single_connection"]["commit_ms"]
    latency = fund["latency"]["latency_ms"]
    sagas = fund["throughput"]["sagas_per_second_steady"]
    best_concurrent = max(pg["concurrent"] + [pg["single_connection"]], key=lambda r: r["commits_per_second"])
    # The critical path of one fund saga: 6 Kafka hops (SendOffer, ChargeClient, ClientCharged, HoldEscrow,
    # EscrowFunded, OfferSent) and 7 commits (4 consumer transactions before OfferSent's, that one, and
    # the gateway simulator's 2 in billing).
    floor = 6 * rt["p50"] + 7 * commit["p50"]
    return {
        "saga_p50_over_kafka_round_trip_p50": round(latency["p50"] / rt["p50"], 1),
        "saga_p99_over_kafka_round_trip_p99": round(latency["p99"] / rt["p99"], 1),
        "saga_p50_over_pg_commit_p50": round(latency["p50"] / commit["p50"], 1),
        "critical_path_floor_ms": round(floor, 2),
        "saga_p50_over_critical_path_floor": round(latency["p50"] / floor, 2),
        "sagas_per_second_over_pg_commits_per_second_single": round(sagas / pg["single_connection"]["commits_per_second"], 4),
        "sagas_per_second_over_pg_commits_per_second_best_concurrent": round(sagas / best_concurrent["commits_per_second"], 4),
        "sagas_per_second_over_pg_batched_steps_per_second": round(sagas / pg["batched_single_connection"]["steps_per_second"], 4),
        "kafka_round_trips_per_second_single": round(1000 / rt["mean"], 1),
        **cpu_capacity(fund),
    }


def cpu_capacity(fund: dict) -> dict:
    """CPU one saga costs on its path (services, their database backends, the broker) at saturation, and the
    sagas per second that would allow if every core of the machine were the platform's."""
    per_saga = fund["throughput"].get("cpu_ms_per_saga") or {}
    on_path = {g: ms for g, ms in per_saga.items()
               if g not in ("bench (this process)", "postgres: server and other databases")}
    if not on_path:
        return {}
    total = sum(on_path.values())
    return {"cpu_ms_per_saga_on_its_path": round(total, 2),
            "sagas_per_second_if_all_cores_were_the_platforms": round(
                1000 * fund["throughput"]["cpu"]["nproc"] / total, 1)}


def verdict(fund: dict | None) -> dict:
    if not fund:
        return {}
    sagas = fund["throughput"]["sagas_per_second_steady"]
    p99 = fund["latency"]["latency_ms"].get("p99", float("inf"))
    return {f"sagas_per_second_at_least_{TARGET_SAGAS_PER_SECOND}": sagas >= TARGET_SAGAS_PER_SECOND,
            f"p99_at_most_{TARGET_P99_MS}_ms_at_{fund['latency']['offered_rate_per_second']:g}_per_s": p99 <= TARGET_P99_MS,
            "every_saga_completed_with_OfferSent": all_sent(fund), "ledger_check_ok": bool(fund.get("ledger_check_ok"))}


def all_sent(fund: dict) -> bool:
    return all(set(fund[k]["outcomes"]) == {"OfferSent"} and fund[k]["all_completed"] for k in ("latency", "throughput"))


def report(result: dict) -> None:
    raw, fund = result.get("raw_limits"), result.get("fund_saga")
    print("\n== benchmark", result["started_at"], "| machine:", json.dumps(result["machine"]))
    if raw:
        k, pg = raw["kafka"], raw["postgres"]
        print(f"Kafka round trip (acks=all, idempotent): p50 {k['round_trip_ms']['p50']} ms, p99 {k['round_trip_ms']['p99']} ms;"
              f" produce ack p50 {k['produce_ack_ms']['p50']} ms")
        print(f"PostgreSQL saga step commit, 1 connection: {pg['single_connection']['commits_per_second']}/s,"
              f" p50 {pg['single_connection']['commit_ms']['p50']} ms, p99 {pg['single_connection']['commit_ms']['p99']} ms")
        for c in pg["concurrent"]:
            print(f"  {c['connections']} connections: {c['commits_per_second']} commits/s, p50 {c['commit_ms']['p50']} ms,"
                  f" p99 {c['commit_ms']['p99']} ms")
        b = pg["batched_single_connection"]
        print(f"  {b['steps_per_commit']} steps per commit: {b['steps_per_second']} steps/s")
    if fund:
        lat, thr = fund["latency"], fund["throughput"]
        print(f"Fund saga latency at {lat['offered_rate_per_second']:g} offers/s for {lat['seconds']} s: "
              f"p50 {lat['latency_ms'].get('p50')} ms, p99 {lat['latency_ms'].get('p99')} ms, max {lat['latency_ms'].get('max')} ms"
              f" ({lat['outcomes']})")
        print(f"Fund saga throughput ({thr['in_flight_target']} in flight, {thr['seconds']:g} s): "
              f"{thr['sagas_per_second_steady']} sagas/s steady (per-second min/max {thr['sagas_per_second_min_max']}),"
              f" open at end {thr['open_at_end']}, all completed {thr['all_completed']} after {thr['drain_seconds']} s"
              f" ({thr['outcomes']})")
        print("CPU (cores) during throughput:", json.dumps(thr["cpu"]["cores_used"]))
        print("CPU ms per saga during throughput:", json.dumps(thr.get("cpu_ms_per_saga")))
        for stage, hop in lat.get("hops_ms", {}).items():
            print(f"  hop {stage}: p50 {hop.get('p50')} ms, p99 {hop.get('p99')} ms")
    for name, value in result.get("ratios", {}).items():
        print(f"  {name}: {value}")
    for name, ok in result.get("verdict", {}).items():
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    if result.get("bonus_batch") is not None:
        print("Bonus batch:", json.dumps(result["bonus_batch"], default=str)[:2000])


def save(result: dict, results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{result['started_at'].replace(':', '').replace('-', '')}.json"
    text = json.dumps(result, indent=2, default=str) + "\n"
    path.write_text(text)
    (results / "latest.json").write_text(text)
    return path
