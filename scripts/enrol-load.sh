#!/bin/bash
# Enrol synthetic ten-finger records through gRPC Insert or InsertStream (240 s) into a fresh node
# (every search through the index) while a ten-finger Identify of a stranger runs one request
# at a time (150 s); then the same Identify idle (60 s). The server's /proc/PID/io gives the
# bytes written, files.txt the bytes stored.
#
#   OUT=DIR [RPC=insert-stream] scripts/enrol-load.sh HARNESS_GALLERY
#
# (HARNESS_GALLERY: any `abis-bench gen` directory, the probe's population.) RPC=insert-stream
# sends the records through InsertStream (2 streams at a time, the server's default limit, of 256
# records each) instead of 16 clients of unary Insert.
#
# Needs target/debug/abis and target/release/abis-bench; uses /tmp/enrol and 127.0.0.1:50997.
set -x
cd "$(dirname "$0")/.."
POP=${1:?usage: OUT=DIR scripts/enrol-load.sh HARNESS_GALLERY}
D=/tmp/enrol; rm -rf $D /tmp/enrol_probe
R=${OUT:-target/enrol-load}; mkdir -p $R
./target/release/abis-bench probe --data "$POP" --person 2000000 --out /tmp/enrol_probe > /dev/null
F=""; for p in 1 2 3 4 5 6 7 8 9 10; do F="$F --finger $p=/tmp/enrol_probe/$p.abft"; done
ABIS__SEARCH__INDEX_ABOVE=0 ./target/debug/abis serve --data $D --listen 127.0.0.1:50997 > $R/serve.log 2>&1 &
PID=$!
until grep -q "gallery prepared for matching" $R/serve.log; do sleep 0.2; done
A="./target/debug/abis client --addr 127.0.0.1:50997"
if [ "${RPC:-insert}" = insert-stream ]; then
  INSERT="--rpc insert-stream --stream-records 256 --requests 2000 --concurrency 2"
else
  INSERT="--rpc insert --requests 300000 --concurrency 16"
fi
$A load $INSERT --synthetic-fingers 10 --max-seconds 240 > $R/insert.json 2> $R/insert.err &
IP=$!
sleep 60
$A load --rpc identify $F --requests 100000 --concurrency 1 --max-seconds 150 > $R/identify_during.json 2> $R/identify_during.err
wait $IP
cat /proc/$PID/io > $R/io_after_insert.txt
sleep 20
$A load --rpc identify $F --requests 100000 --concurrency 1 --max-seconds 60 > $R/identify_idle.json 2> $R/identify_idle.err
cat /proc/$PID/io > $R/io_end.txt
du -b $D/gallery/* > $R/files.txt
kill -TERM $PID; wait $PID
echo ENROL-DONE
