"""``amsweep serve CUBE``: a local web page that watches a running or finished sweep.

The page (Panel on a Bokeh server) shows the cube's progress (``storage.status.status_data``:
counts by state, throughput and ETA, nodes from the run history, failures grouped by message) and
the interactive phase views of ``analysis.views``: any value over any two axes, panels by any
axis, the other axes fixed in menus, a line view at one y value, the class map. Every ``--interval``
seconds it re-reads the status and the one value shown (a few small chunks, not the cube), so the
diagrams fill in as the driver's flushes land.

It only reads the cube: no database beside it, nothing written. The JavaScript comes from the
installed Bokeh and Panel packages (the server's /static/ route), so the page works offline
(tests/test_serve_browser.py checks that no request leaves 127.0.0.1). It binds 127.0.0.1 unless
``--host`` says otherwise, and accepts websocket connections only for the address it serves.
Panel is imported when the command runs, not with the command-line module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
from typing import Any

from amsweep.pipeline.errors import AmsweepError
from amsweep.sweeps.arguments import finite_float

__all__ = ["add_parsers", "cmd_serve", "make_page", "need_view_extra"]

DEFAULT_PORT = 5006  # Panel's own default


def add_parsers(sub: Any) -> None:
    """Register ``serve`` on the ``amsweep`` sub-command parser."""
    s = sub.add_parser("serve", help="a local web page showing a sweep's progress and phase diagrams, live")
    s.add_argument("cube", help="cube path (directory or s3://bucket/key.zarr); only read")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free port; the URL is printed)")
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: all)"
    )
    s.add_argument(
        "--interval", type=finite_float, default=5.0, help="seconds between re-reads of the cube (default 5)"
    )
    s.set_defaults(fn=cmd_serve)


def need_view_extra(what: str) -> None:
    """Panel and HoloViews are an extra (`view`): a clear error, not an ImportError traceback."""
    try:
        import holoviews  # noqa: F401
        import panel  # noqa: F401
    except ImportError as e:
        raise AmsweepError(
            f"{what} needs Panel and HoloViews ({e.name} is not installed): pip install 'amsweep[view]'"
        ) from None


def _url_host(host: str) -> str:
    """``host`` as a URL or websocket origin writes it: an IPv6 address in brackets (Bokeh refuses
    '::1:PORT' as an origin; attack24)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _free_port(host: str, port: int) -> int:
    """The port to serve on, checked free now: a clear error instead of a server traceback."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise AmsweepError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
        return int(s.getsockname()[1])


def make_page(cube: str, interval: float) -> Any:
    """One browser session's page; its periodic callback re-reads the cube every ``interval`` s."""
    import panel as pn

    from amsweep.analysis import derived, views
    from amsweep.pipeline.errors import NoData, QueryError
    from amsweep.storage.query import open_cube
    from amsweep.storage.status import status_data

    ds0 = open_cube(cube)
    axes, coords = views.axis_values(ds0), views.dataset_coords(ds0)
    first = views.default_choice(ds0)
    title = str(ds0.attrs.get("title", "sweep"))

    def labels(values: list) -> dict[str, Any]:
        return {f"{v:g}" if isinstance(v, float) else str(v): v for v in values}

    wide = {"width": 230}
    w_value = pn.widgets.Select(name="value", options=views.offered_values(ds0), value=first.value, **wide)
    w_x = pn.widgets.Select(name="x axis", options=list(axes), value=first.x, **wide)
    w_y = pn.widgets.Select(name="y axis", options=list(axes), value=first.y, **wide)
    w_panel = pn.widgets.Select(
        name="panels by", options={"(one panel)": "", **{a: a for a in axes}}, value=first.panel, **wide
    )
    w_fixed = {
        a: pn.widgets.Select(name=f"{a} =", options=labels(v), value=first.where.get(a, v[0]), **wide)
        for a, v in axes.items()
    }
    w_at = pn.widgets.Select(name="line view at y =", options=labels(axes.get(first.y, [])), value=first.at, **wide)
    w_cmap = pn.widgets.Select(name="colour map", options=views.CMAPS, value=first.cmap, **wide)
    w_clim = pn.widgets.TextInput(name="colour limits", placeholder="auto, or lo,hi (e.g. 0,1)", **wide)
    progress = pn.pane.Markdown("reading the cube ...", css_classes=["amsweep-progress"])
    message = pn.pane.Markdown("", css_classes=["amsweep-message"])
    plots = pn.Column(css_classes=["amsweep-plots"])  # fresh panes each read: an updated pane drew empty axes
    legend = pn.pane.Markdown(views.class_legend(), visible=False)
    stamp = pn.pane.Markdown("")

    def choice() -> views.Choice:
        clim = None
        text = (w_clim.value or "").strip()
        if text and text != "auto":
            try:
                lo, hi = (float(t) for t in text.split(","))
                clim = (lo, hi) if hi > lo else None
            except ValueError:
                clim = None
        c = views.Choice(
            value=w_value.value,
            x=w_x.value,
            y=w_y.value,
            panel=w_panel.value,
            where={a: w.value for a, w in w_fixed.items()},
            at=w_at.value,
            cmap=w_cmap.value,
            clim=clim,
        )
        c = views.fix_others(c, axes, coords)
        for a, w in w_fixed.items():  # an axis shown as x, y or panels has no fixed value
            w.visible = a in c.where
        return c

    drawn: dict[str, Any] = {"counts": None}  # the counts the plots were last drawn at

    def tick() -> None:
        """Every interval: the status (small); the plots only when the counts moved (a flush landed).
        Redrawing costs ~1 s of the server's one thread on a loaded 2-core machine; a page that
        redrew on every tick answered its menus late."""
        try:
            data = status_data(cube)
        except Exception as e:  # a flush being written, an S3 hiccup: say so, try again next time
            progress.object = f"could not read the status: {type(e).__name__}: {e}"
            return
        if data["counts"] != drawn["counts"]:  # plots first: the done count shown is never ahead of them
            drawn["counts"] = data["counts"]
            draw()
        progress.object = views.progress_markdown(data)
        stamp.object = f"read {dt.datetime.now().strftime('%H:%M:%S')}; next in {interval:g} s"

    def draw(*_: Any) -> None:
        """The phase views of the choice in the menus (the chosen value's metrics only)."""
        c = choice()
        legend.visible = c.value in derived.CATEGORICAL
        if c.x == c.y:
            message.object = f"choose two different axes (x and y are both {c.x})"
            return
        try:
            table = views.phase_table(open_cube(cube), c)
            plots.objects = [pn.pane.HoloViews(views.phase_layout(table, c, grid=axes), linked_axes=False)]
            message.object = ""
        except (NoData, QueryError) as e:
            plots.objects = []
            message.object = f"nothing to draw: {e}"

    def new_y(event: Any) -> None:
        values = axes.get(event.new, [])
        w_at.options = labels(values)
        w_at.value = values[len(values) // 2] if values else None

    w_y.param.watch(new_y, "value")
    for w in [w_value, w_x, w_y, w_panel, w_at, w_cmap, w_clim, *w_fixed.values()]:
        w.param.watch(draw, "value")
    tick()
    pn.state.add_periodic_callback(tick, period=int(interval * 1000))
    controls = pn.Column(
        w_value, w_x, w_y, w_panel, *w_fixed.values(), w_at, w_cmap, w_clim, width=250, css_classes=["amsweep-controls"]
    )
    main = pn.Column(progress, message, legend, plots, stamp)
    return pn.Column(pn.pane.Markdown(f"## {title}\n`{cube}`"), pn.Row(controls, main))


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the cube and the address before starting; then serve until Ctrl-C."""
    from amsweep.storage.cube import Cube

    if args.interval <= 0:
        raise AmsweepError(f"--interval {args.interval:g}: must be positive (seconds between re-reads)")
    if not 0 <= args.port <= 65535:
        raise AmsweepError(f"--port {args.port}: not a TCP port (0-65535)")
    need_view_extra("amsweep serve")
    Cube.open(args.cube, mode="r")  # no cube there, or unreadable: a one-line error before any server
    port = _free_port(args.host, args.port)

    import panel as pn

    names = [args.host, "127.0.0.1", "localhost"]
    if args.host not in ("127.0.0.1", "localhost", "::1"):  # reached from elsewhere: by this machine's names too
        names += [socket.gethostname(), socket.getfqdn()]
    # pages from other origins get no websocket. Bokeh's allowlist parser refuses any IPv6 origin
    # ('::1:PORT' and '[::1]:PORT' alike: it splits on ':'), though its matcher takes '[::1]:PORT' (the
    # origin a browser sends); so an IPv6 one is added to the started server's set below (attack24).
    origins = [f"{_url_host(h)}:{port}" for h in dict.fromkeys(names)]
    ipv6 = [o for o in origins if o.startswith("[")]
    origins = [o for o in origins if o not in ipv6]
    server = pn.serve(
        {"/": lambda: make_page(args.cube, args.interval)},
        port=port,
        address=args.host,
        websocket_origin=origins,
        show=False,
        start=False,
        title=f"amsweep {args.cube}",
    )
    server._tornado.websocket_origins.update(ipv6)
    print(f"serving {args.cube} at http://{_url_host(args.host)}:{port}/ (Ctrl-C stops)", flush=True)
    server.start()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    return 0
