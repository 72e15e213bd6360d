"""What a benchmark result was measured on, for the bench scripts' JSON
(the Rust side's twin is `machine()` in src/commands/bench.rs)."""
import datetime
import os
import platform


def machine(**extra):
    """CPU model, logical cores and OS, plus any `extra` fields."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": f"{platform.system().lower()} {platform.machine()}", **extra}


def today():
    """Today's date in UTC, YYYY-MM-DD."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
