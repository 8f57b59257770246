#!/usr/bin/env bash
# Create the autoscaled GPU node pool for finegrain on an existing GKE cluster (run once).
#   CLUSTER=my-cluster LOCATION=us-central1 bash manifests/overlays/gke/gpu-node-pool.sh
# min 0 nodes: GPU nodes exist only while train pods are pending or running. GKE installs the NVIDIA
# driver (gpu-driver-version=latest) and the device plugin; the label and taint below are the ones the
# pipeline's train tasks select and tolerate (PipelineConfig.gpu_node_selector / gpu_toleration_key).
set -euo pipefail
: "${CLUSTER:?set CLUSTER to the GKE cluster name}"
: "${LOCATION:?set LOCATION to the cluster's region or zone}"
MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-16}"
ACCELERATOR="${ACCELERATOR:-type=nvidia-l4,count=1,gpu-driver-version=latest}"
MAX_NODES="${MAX_NODES:-4}"

gcloud container node-pools create finegrain-gpu \
  --cluster "$CLUSTER" \
  --location "$LOCATION" \
  --machine-type "$MACHINE_TYPE" \
  --accelerator "$ACCELERATOR" \
  --disk-type pd-balanced \
  --disk-size 200 \
  --spot \
  --enable-autoscaling \
  --num-nodes 0 \
  --min-nodes 0 \
  --max-nodes "$MAX_NODES" \
  --location-policy ANY \
  --node-labels finegrain.io/pool=gpu \
  --node-taints nvidia.com/gpu=present:NoSchedule
