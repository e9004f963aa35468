"""What each command says about itself: a one-line summary, a description and its exit codes.

One table for the `--help` pages; README.md's commands table says the same (a test checks
that they agree). A new command adds its entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandHelp:
    summary: str
    description: str
    exit_codes: tuple[tuple[int, str], ...]

    @property
    def exit_text(self) -> str:
        return ", ".join(f"{code} {meaning}" for code, meaning in self.exit_codes)

    @property
    def epilog(self) -> str:
        return f"exit codes: {self.exit_text}"


_BAD_SETUP = "bad config, journal or key, or the state directory or a folder is taken"
_UNREACHABLE = "the API stayed unreachable for --wait-for-api (files held)"

COMMANDS: dict[str, CommandHelp] = {
    "run": CommandHelp(
        summary="watch the folders until SIGTERM/SIGINT; SIGHUP reads config and key again",
        description=(
            "Watch every configured folder and upload what settles there, until SIGTERM or "
            "SIGINT. SIGHUP re-reads the configuration and the key. --sandbox runs the "
            "one-minute tour: an embedded sandbox, ./drop, and a config in ./.heygen-watcher/."
        ),
        exit_codes=((0, "clean stop"), (1, "any other fatal error"), (2, _BAD_SETUP)),
    ),
    "scan": CommandHelp(
        summary="one pass over every folder, wait for the uploads, print what this run did",
        description=(
            "Look at every file of every folder once, upload what needs it, wait, and print "
            "what this run did (uploaded, reused, rejected, failed, already done). A progress "
            "bar on a terminal. --dry-run lists what would be uploaded or refused, touching "
            "nothing. While a daemon runs on the same state directory, files are handed to it. "
            "During an API outage it probes the API as the daemon does and carries on when it "
            "answers, waiting at most --wait-for-api seconds (default 300)."
        ),
        exit_codes=(
            (0, "every file done"),
            (1, "some failed or interrupted"),
            (2, _BAD_SETUP),
            (3, _UNREACHABLE),
        ),
    ),
    "upload": CommandHelp(
        summary="upload the given files through the journal; report each as a JSON line",
        description=(
            "Upload the named files, through the same journal, lock and asset cache as the "
            "daemon: a file already uploaded reports its asset (--force uploads it again and "
            "keeps previous_asset_id). While a daemon runs, the files are handed to it. One "
            "JSON line per file on stdout, a summary on stderr."
        ),
        exit_codes=((0, "all uploaded"), (1, "some not"), (2, _BAD_SETUP)),
    ),
    "status": CommandHelp(
        summary="counts per state, oldest waiting, recent failures, pauses; works while running",
        description=(
            "What the journal says: files per state, the oldest waiting, recent failures "
            "(paths relative to their folder), paused or not and why. Works while the daemon "
            "runs and before the first run (creating nothing)."
        ),
        exit_codes=((0, "report printed"), (2, "bad config or journal")),
    ),
    "retry": CommandHelp(
        summary="retry what failed (all, or the given paths) and nothing else",
        description=(
            "Retry failed files and videos now: all of them, or the given paths (each path "
            "not retried says why: unknown, already uploaded, in progress, rejected). The "
            "running daemon does the work if there is one; otherwise this command does and "
            "waits, riding out an API outage for at most --wait-for-api seconds (default "
            "300). Missing sidecars of uploaded, refused and failed files are written again "
            "from the journal."
        ),
        exit_codes=(
            (0, "all retried files done"),
            (1, "some still failed"),
            (2, _BAD_SETUP),
            (3, _UNREACHABLE),
        ),
    ),
    "check-config": CommandHelp(
        summary="validate a config as `run` would read it: keys, key file, folders, templates",
        description=(
            "Validate a configuration exactly as `run` would use it: every key, the API key "
            "(found, safe permissions, which source; never printed), each ${env.NAME} a "
            "template uses, and that every folder, move target, sidecar_dir and download_to "
            "is writable. --for-service prints the ReadWritePaths= line for the systemd "
            "drop-in; --online proves the key with one read-only API call and sends one test "
            "notification to each notify target, printing what it answered."
        ),
        exit_codes=((0, "OK (warnings allowed)"), (2, "problems, each printed once")),
    ),
    "probe": CommandHelp(
        summary="upload a tiny PNG with each protocol; print OK or the refusal for each",
        description=(
            "Try every upload protocol once with a tiny generated PNG and report, for each, "
            "the asset it made or why it was refused. Each successful probe leaves one tiny "
            "unused asset behind."
        ),
        exit_codes=(
            (0, "the configured protocol works"),
            (1, "it does not"),
            (2, "bad config or key"),
        ),
    ),
    "sandbox": CommandHelp(
        summary="serve the local, strict HeyGen sandbox (default key `sandbox`)",
        description=(
            "Serve a local HeyGen on 127.0.0.1 as strict as the real one. It accepts the key "
            "given by --api-key (default: sandbox). Faults are injected with POST "
            "/_sandbox/faults and a JSON object {method, path_prefix, server "
            "(api|storage|upload|*), status, retry_after, after_effect, delay_seconds, reset, "
            "drop_response, count, body}, every field optional; GET /_sandbox/requests shows "
            "what it received."
        ),
        exit_codes=((0, "stopped by a signal"), (2, "usage error")),
    ),
}
