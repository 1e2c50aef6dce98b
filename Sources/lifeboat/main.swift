import LifeboatFUSE

// `protect`, `mount` and the drill's two halves take their stop signals with sigtimedwait; they must be blocked before any thread
// exists so that every thread inherits the mask (see ProtectService).
if ["protect", "mount", "drill", "drill-worker"].contains(CommandLine.arguments.dropFirst().first ?? "")
    || Array(CommandLine.arguments.dropFirst().prefix(2)) == ["vault", "serve"] {
    StopSignals.block()
}
// `export` and `disk create` remove their partial output on a stop signal (InterruptCleanup):
// the same reason, the signals are blocked before any thread exists.
if ["export", "disk"].contains(CommandLine.arguments.dropFirst().first ?? "") {
    InterruptCleanup.startWatcher()
}
runLifeboat()
