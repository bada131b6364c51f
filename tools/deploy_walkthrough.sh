#!/usr/bin/env bash
# docs/deploy.md "From nothing to two web nodes and two workers on one machine", step by step, as root on a throwaway
# Debian machine with nginx, PostgreSQL and Redis installed and /opt/oldphoto installed (steps 1-2). It changes the
# machine: a user, a database, /etc/oldphoto, /etc/nginx/sites-enabled, a self-signed certificate standing for the
# operator's. Without systemd as init, step 6 starts each unit's ExecStart by hand (user oldphoto, the env file).
# Without internet, `models pull` fails and the check restores with the model-free steps (denoise, sharpen).
set -euxo pipefail
# 2.
id oldphoto || useradd --system --home-dir /var/lib/oldphoto --shell /usr/sbin/nologin oldphoto
# 3.
runuser -u postgres -- dropdb --if-exists oldphoto; runuser -u postgres -- dropuser --if-exists oldphoto
runuser -u postgres -- createuser oldphoto && runuser -u postgres -- createdb -O oldphoto oldphoto
runuser -u postgres -- psql -q -c "ALTER USER oldphoto PASSWORD '$(openssl rand -hex 16 | tee /root/oldphoto-db-password)'"
# 4.
install -d -m 750 -g oldphoto /etc/oldphoto
install -m 640 -g oldphoto /opt/oldphoto/deploy/oldphoto.env /etc/oldphoto/oldphoto.env
sed -i -e "s|oldphoto:CHANGE-ME@db.internal|oldphoto:$(cat /root/oldphoto-db-password)@127.0.0.1|" \
       -e "s|redis.internal|127.0.0.1|" \
       -e "s|CHANGE-ME-to-a-long-random-secret|$(openssl rand -hex 32)|" /etc/oldphoto/oldphoto.env
grep -v '^#' /etc/oldphoto/oldphoto.env | grep . | sed 's/SECRET=.*/SECRET=.../; s/:[0-9a-f]*@/:...@/'
# 5.
set -a; . /etc/oldphoto/oldphoto.env; set +a
install -d -o oldphoto -g oldphoto /var/cache/oldphoto /var/cache/oldphoto/models
runuser -u oldphoto -- env $(grep -v '^#' /etc/oldphoto/oldphoto.env | grep . | xargs) /opt/oldphoto/.venv/bin/oldphoto db upgrade
runuser -u oldphoto -- env $(grep -v '^#' /etc/oldphoto/oldphoto.env | grep . | xargs) /opt/oldphoto/.venv/bin/oldphoto models pull ddcolor_paper_tiny || echo "models pull failed (no internet here)"
# 6. each unit's ExecStart, with what StateDirectory would make
for port in 8001 8002; do
  install -d -o oldphoto -g oldphoto /var/lib/oldphoto /var/lib/oldphoto/web-$port
  runuser -u oldphoto -- env $(grep -v '^#' /etc/oldphoto/oldphoto.env | grep . | xargs) \
    /opt/oldphoto/.venv/bin/oldphoto serve --host 127.0.0.1 --port $port --data-dir /var/lib/oldphoto/web-$port > /tmp/walk-web-$port.log 2>&1 &
  echo $! > /tmp/walk-web-$port.pid
done
for port in 9101 9102; do
  install -d -o oldphoto -g oldphoto /var/lib/oldphoto/worker-$port
  runuser -u oldphoto -- env $(grep -v '^#' /etc/oldphoto/oldphoto.env | grep . | xargs) \
    /opt/oldphoto/.venv/bin/oldphoto worker --data-dir /var/lib/oldphoto/worker-$port --metrics-port $port > /tmp/walk-worker-$port.log 2>&1 &
  echo $! > /tmp/walk-worker-$port.pid
done
# 7. a self-signed certificate stands for the operator's
install -d /etc/letsencrypt/live/photos.example.org
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=photos.example.org \
  -keyout /etc/letsencrypt/live/photos.example.org/privkey.pem -out /etc/letsencrypt/live/photos.example.org/fullchain.pem 2>/dev/null
/opt/oldphoto/.venv/bin/python -m oldphoto.deploy --server-name photos.example.org \
    --upstream 127.0.0.1:8001 --upstream 127.0.0.1:8002 \
    --cert /etc/letsencrypt/live/photos.example.org/fullchain.pem \
    --key /etc/letsencrypt/live/photos.example.org/privkey.pem > /etc/nginx/sites-available/oldphoto
ln -sf ../sites-available/oldphoto /etc/nginx/sites-enabled/ && rm -f /etc/nginx/sites-enabled/default
nginx -t
nginx -s reload 2>/dev/null || nginx
sleep 20
# 8.
site=https://photos.example.org
c="curl -sk --resolve photos.example.org:443:127.0.0.1"
$c $site/healthz; echo; sleep 1; $c $site/healthz; echo
token=$($c -X POST $site/api/session | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
/opt/oldphoto/.venv/bin/python -c 'from PIL import Image; Image.radial_gradient("L").resize((640, 480)).save("/tmp/old.jpg")'
job=$($c -H "Authorization: Bearer $token" -F file=@/tmp/old.jpg -F steps=denoise,sharpen $site/api/jobs | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
$c -N -H "Authorization: Bearer $token" $site/api/jobs/$job/events | grep '^data' | cut -c1-160
$c -H "Authorization: Bearer $token" -o /tmp/restored.png $site/results/$job.png && file /tmp/restored.png
curl -s http://127.0.0.1:9101/metrics | grep -c '^oldphoto'   # the worker node's own /metrics
