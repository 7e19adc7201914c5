# Shared by the bench scripts (sourced; they define log, die, REPO and
# CARGO_TARGET_DIR first).

# find_weft [WRAPPER…]: sets WEFT to an absolute path of the weft binary —
# $WEFT when given, else the release build (cargo build, run through
# WRAPPER, e.g. a time bound), else, without cargo, an earlier release build.
find_weft() {
    if [[ -n ${WEFT:-} ]]; then
        [[ -x $WEFT ]] || die "WEFT=$WEFT is not an executable"
    elif command -v cargo >/dev/null; then
        log "building weft (cargo build --release --locked --bins, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
        (cd "$REPO" && "$@" cargo build --release --locked --bins >&2) \
            || die "cargo build failed (WEFT=/path/to/weft runs a binary built earlier)"
        WEFT=$CARGO_TARGET_DIR/release/weft
    else
        WEFT=$CARGO_TARGET_DIR/release/weft
        [[ -x $WEFT ]] || die "no cargo on PATH and no $WEFT (sudo drops PATH: try sudo env PATH=\$PATH …, or WEFT=…)"
        log "no cargo on PATH: using the existing $WEFT"
    fi
    WEFT=$(realpath "$WEFT")
}
