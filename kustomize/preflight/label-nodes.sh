#!/bin/sh
# Labels each arm64 node by what the preflight saw there: gcd-service/envoy=runs where Envoy
# started (its pod is Ready), no label where it crashed (restarted and not Ready). The pi overlay
# schedules gcd pods on labelled nodes only. Run it once every preflight pod is Ready or in
# CrashLoopBackOff; run it again after changing a node's kernel.
set -eu
label=gcd-service/envoy
per_pod='{.spec.nodeName} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}'
kubectl -n gcd-preflight get pods -o jsonpath="{range .items[*]}$per_pod{\"\\n\"}{end}" |
while read -r node ready restarts; do
  if [ -z "$node" ]; then
    echo "a preflight pod is not scheduled yet; run this again in a minute"
  elif [ "$ready" = true ]; then
    kubectl label node "$node" "$label=runs" --overwrite
  elif [ "${restarts:-0}" -gt 0 ]; then
    echo "$node: Envoy does not start there (kubectl -n gcd-preflight logs --previous on its pod says why)"
    kubectl label node "$node" "$label-"
  else
    echo "$node: the preflight pod is still starting; run this again in a minute"
  fi
done
