#!/bin/sh
# Labels each arm64 node by what the preflight saw there: gcd-service/envoy=runs where Envoy
# started (its pod is Ready), no label where it crashed (restarted and not Ready). The pi overlay
# schedules gcd pods on labelled nodes only. Run it once every preflight pod is Ready or in
# CrashLoopBackOff; run it again after changing a node's kernel.
set -eu
label=gcd-service/envoy
# Per pod: its node, and its one container's readiness, restarts and reason for waiting, if any.
per_pod='{.spec.nodeName} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}'
per_pod="$per_pod {.status.containerStatuses[0].state.waiting.reason}"
kubectl -n gcd-preflight get pods -o jsonpath="{range .items[*]}$per_pod{\"\\n\"}{end}" |
while read -r node ready restarts waiting; do
  if [ -z "$node" ]; then
    echo "a preflight pod is not scheduled yet; run this again in a minute"
  elif [ "$ready" = true ]; then
    kubectl label node "$node" "$label=runs" --overwrite
  elif [ "${restarts:-0}" -gt 0 ]; then
    echo "$node: Envoy does not start there (kubectl -n gcd-preflight logs --previous on its pod says why)"
    kubectl label node "$node" "$label-"
  elif [ -n "${waiting:-}" ] && [ "$waiting" != ContainerCreating ]; then
    echo "$node: the preflight pod is stuck before Envoy ran: $waiting (kubectl -n gcd-preflight describe pod)"
  else
    echo "$node: the preflight pod is still starting; run this again in a minute"
  fi
done
