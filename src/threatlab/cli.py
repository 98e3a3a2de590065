"""The `threatlab` command.

Exit codes: 0 done; 1 the run failed (one line "run failed: ..." on stderr); 2 bad usage or input
(one line on stderr). No traceback for either unless THREATLAB_DEBUG=1.

Environment: THREATLAB_PLUGINS=mod1,mod2 adds the `THREATS` of those importable modules to the
catalogue; THREATLAB_PROGRESS=1/0 forces the progress bar (on stderr) on or off; by default it shows
when stderr is a terminal and the work takes more than a second.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

import threatlab
from threatlab.errors import ThreatlabError, UsageError
from threatlab.lab.catalogue import PROTOCOL_PACKAGES, Catalogue, Threat, load_catalogue
from threatlab.lab.runner import SEED_MAX, SEED_MIN, RunFailed, RunResult, run_threat

DEBUG_ENV = "THREATLAB_DEBUG"
DEFAULT_OUT = "threatlab-out"
DEFAULT_BUDGET_PACKETS = 10_000
DEFAULT_BUDGET_SECONDS = 30.0


# --------------------------------------------------------------------------------------------
# errors: one line on stderr, the right exit code


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ThreatlabGroup(click.Group):
    """A click group that turns every error into one line on stderr and exit code 1 or 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        prog = prog_name or "threatlab"
        try:
            rv = super().main(args, prog, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:  # click's own usage errors
            where = exc.ctx.command_path if isinstance(exc, click.UsageError) and exc.ctx else prog
            _fail(2, f"{where}: error: {exc.format_message()}", exc)
        except click.Abort as exc:
            _fail(130, f"{prog}: aborted", exc)
        except KeyboardInterrupt as exc:
            _fail(130, f"{prog}: interrupted", exc)
        except UsageError as exc:
            _fail(2, f"{prog}: error: {exc}", exc)
        except RunFailed as exc:
            _fail(1, f"run failed: {exc}", exc)
        except ThreatlabError as exc:
            _fail(1, f"{prog}: error: {exc}", exc)
        except Exception as exc:  # a bug or an unexpected failure inside a run
            text = str(exc)
            _fail(1, f"run failed: {type(exc).__name__}" + (f": {text}" if text else ""), exc)
        code = rv if isinstance(rv, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(code: int, message: str, exc: BaseException) -> None:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(_one_line(message), err=True)
    sys.exit(code)


PIPE_WIDTH = 160  # table width when stdout is not a terminal (a pipe, a file, a test)


def _stdout_console():
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


# --------------------------------------------------------------------------------------------
# input parsing


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """["K=V", ...] -> {K: V}; UsageError for anything else."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"bad --param {item!r}: expected NAME=VALUE")
        if name in out:
            raise UsageError(f"--param {name} given twice")
        out[name] = value.strip()
    return out


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """["K=V1,V2", ...] -> {K: [V1, V2]}."""
    grid: dict[str, list[str]] = {}
    for name, text in parse_assignments(items).items():
        values = [v.strip() for v in text.split(",")]
        if any(v == "" for v in values):
            raise UsageError(f"bad --param {name}={text!r}: expected NAME=V1,V2,... with no empty value")
        grid[name] = values
    return grid


def _defense_sets(threat: Threat, defenses: Sequence[str], no_defense: bool) -> list[frozenset[str]]:
    from threatlab.lab.sweep import default_defense_sets

    if no_defense and defenses:
        raise UsageError("give either --defense or --no-defense, not both")
    if no_defense:
        return [frozenset()]
    if defenses:
        return [threat.resolve_defenses(tuple(defenses))]
    return default_defense_sets(threat)


def _open_store(out: str):
    from threatlab.lab.store import Store, default_store_path

    return Store(default_store_path(out))


# --------------------------------------------------------------------------------------------
# output


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _defenses_label(defenses: Sequence[str]) -> str:
    return ", ".join(defenses) if defenses else "none"


def _metric_order(results: Sequence[RunResult], threat: Threat | None) -> list[str]:
    names = ["success_rate"] + ([m.name for m in threat.metrics] if threat else [])
    for r in results:
        names += list(r.metrics)
    present = {n for r in results for n in r.metrics}
    return [n for n in dict.fromkeys(names) if n in present]


def results_table(results: Sequence[RunResult], catalogue: Catalogue | None = None, *, show_threat: bool = False,
                  param_columns: Sequence[str] = (), title: str | None = None):
    """A rich table: one row per run; each metric measured, with the analytic value in parentheses."""
    from rich.table import Table

    threats = {t.id: t for t in catalogue} if catalogue is not None else {}
    if show_threat:
        return _summary_table(results, threats, title)
    single = threats.get(results[0].threat) if results else None
    metrics = _metric_order(results, single)
    from rich.text import Text

    table = Table(title=Text(title) if title is not None else None)
    table.add_column("defenses")
    for p in param_columns:
        table.add_column(p, justify="right")
    table.add_column("trials", justify="right")
    for m in metrics:
        table.add_column(f"{m} (expected)" if any(m in (r.expected or {}) for r in results) else m, justify="right")
    for r in results:
        row = [_defenses_label(r.defenses)]
        row += [_fmt(r.params.get(p)) for p in param_columns]
        row.append(str(r.trials))
        for m in metrics:
            cell = _fmt(r.metrics.get(m))
            if r.expected and m in r.expected:
                cell += f" ({_fmt(r.expected[m])})"
            row.append(cell)
        _add_row(table, *row)
    return table


SUMMARY_METRICS = 3  # besides success_rate, the first few of a threat's declared metrics


def _summary_table(results: Sequence[RunResult], threats: dict[str, Threat], title: str | None):
    """Many threats in one table: their metrics differ, so each row lists its own few in one cell."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title is not None else None)
    table.add_column("threat", no_wrap=True)
    table.add_column("defenses")
    table.add_column("trials", justify="right")
    table.add_column("success_rate (expected)", justify="right")
    table.add_column("other metrics (expected)")
    for r in results:
        def cell(m: str) -> str:
            text = _fmt(r.metrics.get(m))
            if r.expected and m in r.expected:
                text += f" ({_fmt(r.expected[m])})"
            return text

        threat = threats.get(r.threat)
        declared = [m.name for m in threat.metrics] if threat is not None else list(r.metrics)
        others = [m for m in declared if m != "success_rate" and m in r.metrics][:SUMMARY_METRICS]
        _add_row(table, r.threat, _defenses_label(r.defenses), r.trials, cell("success_rate"),
                 "; ".join(f"{m} {cell(m)}" for m in others))
    return table


def _add_row(table: Any, *cells: Any) -> None:
    """Add a row of plain text: user-derived strings are never read as rich markup."""
    from rich.text import Text

    table.add_row(*(Text(str(c)) for c in cells))


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, allow_nan=False, default=str))


def threat_summary(threat: Threat) -> dict[str, Any]:
    return {
        "id": threat.id,
        "protocol": threat.protocol,
        "title": threat.title,
        "summary": threat.summary,
        "source": {"seed_file": threat.source.seed_file, "section": threat.source.section,
                   "draft": threat.source.draft},
        "position": threat.position.value,
        "knowledge": threat.knowledge,
        "params": [
            {"name": p.name, "unit": p.unit, "default": p.default, "range": p.describe_range(), "doc": p.doc}
            for p in threat.params
        ],
        "defenses": [{"id": d.id, "description": d.description} for d in threat.defenses],
        "metrics": [{"name": m.name, "unit": m.unit, "description": m.description} for m in threat.metrics],
        "expected": threat.expected is not None,
        "peers": sorted(threat.peers),
        "default_trials": threat.default_trials,
        "tags": list(threat.tags),
    }


# --------------------------------------------------------------------------------------------
# commands


@click.group(cls=ThreatlabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(threatlab.__version__, "--version", prog_name="threatlab", message="%(prog)s %(version)s")
def cli() -> None:
    """Executable threat analyses: real protocols, real attacks, measured defenses.

    Threats of your own join the catalogue through THREATLAB_PLUGINS=module[,module...]: each
    module's THREATS tuple of threatlab.lab.catalogue.Threat entries.
    """


@cli.command("list")
@click.option("--protocol", "protocol", metavar="P", help="Only this protocol's threats (dhcp, tcp, ...).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of threat summaries.")
def list_cmd(protocol: str | None, as_json: bool) -> None:
    """The catalogue of threats."""
    cat = load_catalogue()
    threats = list(cat)
    if protocol is not None:
        known = set(PROTOCOL_PACKAGES) | {t.protocol for t in cat}
        if protocol not in known:
            raise UsageError(f"unknown protocol {protocol!r} (protocols: {', '.join(sorted(known))})")
        threats = cat.protocol(protocol)
    if as_json:
        _emit_json([threat_summary(t) for t in threats])
        return
    if not threats:
        click.echo("the catalogue is empty" if protocol is None else f"no threats for protocol {protocol}")
        return
    from rich.table import Table

    table = Table()
    for col in ("id", "title", "position", "defenses", "source"):
        table.add_column(col)
    for t in threats:
        source = f"{t.source.draft or t.source.seed_file} \u00a7{t.source.section}"
        _add_row(table, t.id, t.title, t.position.value, ", ".join(t.defense_ids()) or "-", source)
    _stdout_console().print(table)


@cli.command("show")
@click.argument("threat_id", metavar="ID")
def show_cmd(threat_id: str) -> None:
    """Everything about one threat."""
    from rich.markup import escape
    from rich.table import Table

    t = load_catalogue().get(threat_id)
    con = _stdout_console()
    con.print(f"[bold]{escape(t.id)}[/bold]: {escape(t.title)}")
    if t.summary:
        con.print(escape(t.summary))
    src = t.source
    con.print(f"source: {escape(src.draft or '-')} section {escape(src.section)} (seeds/{escape(src.seed_file)})")
    con.print(f"attacker position: {t.position.value}")
    con.print(f"attacker knowledge: {escape(t.knowledge)}")
    if t.params:
        table = Table(title="parameters")
        for col in ("name", "default", "unit", "allowed", "meaning"):
            table.add_column(col)
        for p in t.params:
            _add_row(table, p.name, _fmt(p.default), p.unit, p.describe_range(), p.doc)
        con.print(table)
    else:
        con.print("parameters: none")
    if t.defenses:
        table = Table(title="defenses")
        table.add_column("id")
        table.add_column("what it switches")
        for d in t.defenses:
            _add_row(table, d.id, d.description)
        con.print(table)
    else:
        con.print("defenses: none")
    table = Table(title="metrics")
    for col in ("name", "unit", "meaning"):
        table.add_column(col)
    for m in t.metrics:
        _add_row(table, m.name, m.unit, m.description)
    con.print(table)
    con.print(f"analytic expectation: {'yes' if t.expected is not None else 'no'}")
    con.print(f"default trials: {t.default_trials}")
    con.print(f"live peers: {escape(', '.join(sorted(t.peers))) if t.peers else 'none'}")


def _pcap_for(pcap: str | None, defenses: frozenset[str], rows: int) -> str | None:
    """One row writes FILE; several write FILE-<defenses>.pcap each, so none overwrites another."""
    if pcap is None or rows == 1:
        return pcap
    path = Path(pcap)
    label = "+".join(sorted(defenses)) if defenses else "baseline"
    return str(path.with_name(f"{path.stem}-{label}{path.suffix or '.pcap'}"))


@cli.command("run")
@click.argument("threat_id", metavar="ID", required=False)
@click.option("--all", "run_all", is_flag=True, help="Every threat: baseline vs all defenses, then the report.")
@click.option("--defense", "defenses", multiple=True, metavar="D", help="Run with this defense (repeatable).")
@click.option("--no-defense", is_flag=True, help="Only the baseline row.")
@click.option("--param", "params", multiple=True, metavar="K=V", help="Set a parameter (repeatable).")
@click.option("--trials", type=click.IntRange(min=1), help="Trials per row (default: the threat's).")
@click.option("--seed", type=click.IntRange(SEED_MIN, SEED_MAX), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--pcap", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write trial 0 as a pcap (with two rows: FILE-baseline.pcap and FILE-<defenses>.pcap).")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Where the results store (and with --all, the report) lives.")
def run_cmd(threat_id: str | None, run_all: bool, defenses: tuple[str, ...], no_defense: bool,
            params: tuple[str, ...], trials: int | None, seed: int, as_json: bool, pcap: str | None, out: str) -> None:
    """Run a threat: without --defense, one row with no defense and one with all of them."""
    if run_all:
        if threat_id is not None:
            raise UsageError("give either a threat ID or --all, not both")
        extra = [name for name, given in (("--defense", defenses), ("--no-defense", no_defense), ("--param", params),
                                          ("--json", as_json), ("--pcap", pcap)) if given]
        if extra:
            raise UsageError(f"--all runs every threat at its defaults; it takes no {', '.join(extra)}")
        _run_all(trials, seed, out)
        return
    if threat_id is None:
        raise UsageError("missing threat ID (or --all); `threatlab list` shows the catalogue")
    from threatlab.lab.progress import LazyProgress

    cat = load_catalogue()
    threat = cat.get(threat_id)
    values = threat.resolve_params(parse_assignments(params))
    sets = _defense_sets(threat, defenses, no_defense)
    n = trials if trials is not None else threat.default_trials
    results: list[RunResult] = []
    with _open_store(out) as store, LazyProgress(n * len(sets), threat.id) as bar:
        for dset in sets:
            result = run_threat(threat, values, dset, n, seed, pcap=_pcap_for(pcap, dset, len(sets)),
                                on_trial=bar.advance)
            store.put(result)
            results.append(result)
    if as_json:
        _emit_json({"threat": threat.id, "rows": [r.to_row() for r in results]})
    else:
        _stdout_console().print(results_table(results, cat, title=f"{threat.id}: {threat.title}"))


def _run_all(trials: int | None, seed: int, out: str) -> None:
    from threatlab.lab.progress import LazyProgress
    from threatlab.lab.report import write_report
    from threatlab.lab.sweep import default_defense_sets

    cat = load_catalogue()
    if len(cat) == 0:
        click.echo("the catalogue is empty: no threats to run")
        return
    plan = [(t, d) for t in cat for d in default_defense_sets(t)]
    total = sum(trials if trials is not None else t.default_trials for t, _ in plan)
    results: list[RunResult] = []
    failures: list[RunFailed] = []
    with _open_store(out) as store:
        with LazyProgress(total, "run --all") as bar:
            for threat, dset in plan:
                n = trials if trials is not None else threat.default_trials
                try:  # one failing threat does not hide the others' results
                    result = run_threat(threat, None, dset, n, seed, on_trial=bar.advance)
                except RunFailed as exc:
                    failures.append(exc)
                    continue
                store.put(result)
                results.append(result)
        stored = store.query()
        path = write_report(stored, out, cat, source=str(store.path))
    if results:
        _stdout_console().print(results_table(results, cat, show_threat=True, title="baseline vs all defenses"))
    click.echo(f"report: {path}")
    if failures:
        raise RunFailed(f"{len(failures)} of {len(plan)} runs failed; first: {failures[0]}")


@cli.command("sweep")
@click.argument("threat_id", metavar="ID")
@click.option("--param", "params", multiple=True, metavar="K=V1,V2,...", help="Values to sweep (repeatable).")
@click.option("--defense", "defenses", multiple=True, metavar="D",
              help="Sweep only this defense set (repeatable); default: baseline and all defenses.")
@click.option("--no-defense", is_flag=True, help="Sweep only the baseline.")
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes (default: CPUs).")
@click.option("--scheduler", metavar="ADDRESS", help="A Dask scheduler, e.g. tcp://10.0.0.5:8786.")
@click.option("--trials", type=click.IntRange(min=1), help="Trials per run (default: the threat's).")
@click.option("--seed", type=click.IntRange(SEED_MIN, SEED_MAX), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False), metavar="DIR")
def sweep_cmd(threat_id: str, params: tuple[str, ...], defenses: tuple[str, ...], no_defense: bool,
              workers: int | None, scheduler: str | None, trials: int | None, seed: int, as_json: bool,
              out: str) -> None:
    """Run a threat over a grid of parameter values; resumes where a killed sweep stopped."""
    from threatlab.lab.sweep import sweep

    if workers is not None and scheduler is not None:
        raise UsageError("give either --workers or --scheduler, not both")
    cat = load_catalogue()
    threat = cat.get(threat_id)
    grid = parse_grid(params)
    sets = _defense_sets(threat, defenses, no_defense)
    with _open_store(out) as store:
        results = sweep(threat, grid, sets, trials, seed, store, workers=workers, scheduler=scheduler)
    if as_json:
        _emit_json({"threat": threat.id, "rows": [r.to_row() for r in results]})
    else:
        swept = [name for name, values in grid.items() if len(values) > 1] or list(grid)
        _stdout_console().print(results_table(results, cat, param_columns=swept, title=f"sweep {threat.id}"))


@cli.command("report")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Reads DIR/results.sqlite, writes DIR/report.html.")
def report_cmd(out: str) -> None:
    """Write the HTML report from the results store."""
    from threatlab.lab.report import write_report
    from threatlab.lab.store import default_store_path

    if not default_store_path(out).is_file():
        raise UsageError(f"no results store at {default_store_path(out)}: run or sweep something first")
    cat = load_catalogue()
    with _open_store(out) as store:
        path = write_report(store.query(), out, cat, source=str(store.path))
    click.echo(f"report: {path}")


@cli.command("live")
@click.argument("threat_id", metavar="ID")
@click.option("--peer", required=True, metavar="NAME", help="The real peer to attack (see `threatlab show ID`).")
@click.option("--budget-packets", type=click.IntRange(min=1), default=DEFAULT_BUDGET_PACKETS, show_default=True)
@click.option("--budget-seconds", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_BUDGET_SECONDS,
              show_default=True)
@click.option("--defense", "defenses", multiple=True, metavar="D", help="Turn on a defense (repeatable).")
@click.option("--param", "params", multiple=True, metavar="K=V", help="Set a parameter (repeatable).")
@click.option("--peers", "n_peers", type=click.IntRange(min=2, max=200), default=None, metavar="N",
              help="How many real peer processes to start, for live runs of many peers (the overlay's). "
                   "[default: the threat's, 50 for the overlay]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def live_cmd(threat_id: str, peer: str, budget_packets: int, budget_seconds: float, defenses: tuple[str, ...],
             params: tuple[str, ...], n_peers: int | None, as_json: bool) -> None:
    """Run a threat against a real peer in network namespaces (needs root)."""
    threat = load_catalogue().get(threat_id)
    if peer not in threat.peers:
        have = ", ".join(sorted(threat.peers))
        raise UsageError(
            f"{threat.id} has no live peer {peer!r} " + (f"(peers: {have})" if have else "(it has no live peers)")
        )
    values = threat.resolve_params(parse_assignments(params))
    dset = threat.resolve_defenses(tuple(defenses))
    live_params = dict(values) if n_peers is None else {**values, "peers": n_peers}
    report = threat.peers[peer](live_params, dset, budget_packets=budget_packets, budget_seconds=budget_seconds)
    data = dict(report) if isinstance(report, Mapping) else {"result": report}
    if as_json:
        _emit_json({"threat": threat.id, "peer": peer, "defenses": sorted(dset), "params": live_params, "result": data})
        return
    from rich.table import Table

    from rich.text import Text

    table = Table(title=Text(f"{threat.id} live against {peer}"))
    table.add_column("measure")
    table.add_column("value")
    blocks = []  # multi-line values (a differential table, say) print below, as they are laid out
    for k, v in data.items():
        text = _fmt(v)
        if "\n" in text:
            blocks.append((str(k), text))
        else:
            _add_row(table, str(k), text)
    console = _stdout_console()
    console.print(table)
    for name, text in blocks:
        console.print(Text(f"\n{name}:\n{text}"))


@cli.group("serve")
def serve_group() -> None:
    """threatlab's own endpoints as real services on real interfaces (needs root)."""


def _ipv4_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from ipaddress import IPv4Address

    def one(text: str) -> IPv4Address:
        try:
            return IPv4Address(text.strip())
        except ValueError:
            raise click.BadParameter(f"{text!r} is not an IPv4 address") from None

    if value is None:
        return None
    return tuple(one(v) for v in value) if isinstance(value, tuple) else one(value)


@serve_group.command("dhcp")
@click.option("--interface", required=True, metavar="IF", help="The interface to serve on (it needs an IPv4 address).")
@click.option("--pool", required=True, metavar="FIRST-LAST", help="The addresses to lease, e.g. 10.0.0.10-10.0.0.99.")
@click.option("--server-id", callback=_ipv4_option, metavar="ADDR",
              help="The server identifier: an address of IF (default: the one whose subnet holds the pool).")
@click.option("--lease-time", type=click.IntRange(1, 0xFFFFFFFF), default=3600, show_default=True, metavar="S",
              help="Lease time in seconds (T1 is half, T2 seven eighths of it).")
@click.option("--lease-db", type=click.Path(dir_okay=False), metavar="PATH",
              default=str(Path(DEFAULT_OUT) / "dhcp-leases.sqlite"), show_default=True,
              help="The SQLite lease database; a restart with the same file keeps every lease.")
@click.option("--sync", type=click.Choice(["full", "normal"], case_sensitive=False), default="full",
              show_default=True,
              help="full: a lease is fsync'ed before the reply granting it leaves (survives power loss); "
                   "normal: it survives a crash of this process, not of the machine.")
@click.option("--router", "routers", multiple=True, callback=_ipv4_option, metavar="ADDR",
              help="Option 3, routers (repeatable).")
@click.option("--dns", "dns_servers", multiple=True, callback=_ipv4_option, metavar="ADDR",
              help="Option 6, DNS servers (repeatable).")
@click.option("--auth-protocol", type=click.Choice(["0", "1", "2"]), default="1", show_default=True,
              help="RFC 3118 protocol: 0 configuration token, 1 delayed authentication (HMAC-MD5), "
                   "2 delayed authentication with a realm (dhcpcd's delayedrealm).")
@click.option("--auth-paradigm", type=click.Choice(["none", "mutual", "client-authenticates-server",
                                                    "server-authenticates-client"]),
              help="Who authenticates whom (draft 4.2). Default: mutual with --auth-key, else none.")
@click.option("--auth-key", "auth_keys", multiple=True, metavar="ID:SECRET",
              help="An RFC 3118 key: secret ID and secret (text, or hex after 0x); for protocol 0 the token. "
                   "Repeatable.")
@click.option("--auth-realm", default="", metavar="REALM", help="The realm of the keys (protocol 2).")
@click.option("--quiet", is_flag=True, help="Log only start, stop and errors, not every lease event.")
def serve_dhcp_cmd(interface: str, pool: str, server_id: Any, lease_time: int, lease_db: str, sync: str,
                   routers: tuple, dns_servers: tuple, auth_protocol: str, auth_paradigm: str | None,
                   auth_keys: tuple[str, ...], auth_realm: str, quiet: bool) -> int:
    """threatlab's DHCP server (RFC 2131, RFC 3118) on interface IF until SIGTERM or SIGINT.

    One line per lease event on stderr; leases in SQLite at --lease-db. Needs root.
    """
    from threatlab.dhcp.serve import ServeSettings, parse_auth_key, parse_pool, serve

    first, last = parse_pool(pool)
    realm = auth_realm.encode()
    keys = tuple(parse_auth_key(k, realm) for k in auth_keys)
    settings = ServeSettings(
        interface=interface, pool_start=first, pool_end=last, server_id=server_id, lease_time=lease_time,
        lease_db=Path(lease_db), sync=sync.upper(), routers=routers, dns_servers=dns_servers,
        auth_paradigm=auth_paradigm, auth_protocol=int(auth_protocol), auth_keys=keys, log_events=not quiet,
    )
    return serve(settings)


def _listen_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    from threatlab.overlay.enroll_service import parse_listen

    try:
        return parse_listen(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc).removeprefix("--listen ")) from None


@serve_group.command("enrollment")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, callback=_listen_option, metavar="ADDR:PORT",
              help="The IPv4 address and TCP port to serve HTTPS on.")
@click.option("--ca-dir", type=click.Path(file_okay=False), metavar="DIR",
              default=str(Path(DEFAULT_OUT) / "enrollment-ca"), show_default=True,
              help="The CA's key, certificate and issuance counts (created if missing, reused on restart).")
@click.option("--issuance-limit", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Certificates one user may hold.")
@click.option("--overlay", default="threatlab.example", show_default=True, metavar="NAME",
              help="The overlay name the certificates' Node-ID URIs carry.")
@click.option("--quiet", is_flag=True, help="Log only start and stop, not every enrollment.")
def serve_enrollment_cmd(listen: tuple[str, int], ca_dir: str, issuance_limit: int, overlay: str,
                         quiet: bool) -> int:
    """The P2PSIP/RELOAD enrollment server over HTTPS until SIGTERM or SIGINT.

    POST /enroll with JSON {"user": NAME, "csr": PEM} returns a certificate binding a random,
    server-chosen Node-ID to the user (at most N per user); GET /ca returns the CA certificate.
    """
    from threatlab.overlay.enroll_service import ServiceSettings, serve

    host, port = listen
    return serve(ServiceSettings(host=host, port=port, ca_dir=Path(ca_dir), issuance_limit=issuance_limit,
                                 overlay=overlay, log=not quiet))


def main(argv: Sequence[str] | None = None, prog_name: str = "threatlab") -> None:
    """The console script's entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name=prog_name)


if __name__ == "__main__":  # pragma: no cover
    main()
