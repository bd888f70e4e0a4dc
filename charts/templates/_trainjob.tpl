{{/* Kubeflow Trainer v2 (v2.3, trainer.kubeflow.org/v1alpha1): the per-model runtime and the per-stage TrainJob.
What these templates rely on, in kubeflow/trainer at tag v2.3.0:
- pkg/runtime/framework/plugins/torch/torch.go:110-225: the torch plugin finds the container named `node` in the
  replicated job labelled `trainer.kubeflow.org/trainjob-ancestor-step: trainer` and, only when the TrainJob has a
  `spec.trainer`, injects PET_NNODES (the trainer's numNodes), PET_NPROC_PER_NODE (trainer.numProcPerNode, else
  "auto", which on a pod without GPUs becomes its CPU count: lines 121-135, so the chart always sets it),
  PET_NODE_RANK (the Job completion index), PET_MASTER_ADDR (<trainjob>-node-0-0.<trainjob>) and
  PET_MASTER_PORT (29500, pkg/constants/constants.go:72) and opens that port.
- pkg/apis/trainer/v1alpha1/trainingruntime_types.go:208-219: v2.3's torch policy has no numProcPerNode; the
  per-stage value goes in TrainJob.spec.trainer.numProcPerNode (trainjob_types.go:284-288).
- pkg/apis/trainer/v1alpha1/trainjob_types.go:118-124,389-463: runtimePatches (it replaced podTemplateOverrides)
  may set pod labels/annotations, nodeSelector, tolerations, volumes, container volumeMounts and securityContext;
  not schedulerName or priorityClassName (so those live in the runtime), and no env on the `node` container
  (pkg/runtime/framework/plugins/jobset/jobset.go:199-206: env goes through spec.trainer.env).
- pkg/runtime/core/trainingruntime.go:199-238: spec.trainer.resourcesPerNode replaces the `node` container's
  resources; the command and image come from spec.trainer (jobset/jobset.go:357-378).
- pkg/runtime/framework/plugins/coscheduling/coscheduling.go:81-141 and volcano/volcano.go:130-200: a pod-group
  policy adds the PodGroup label/annotation and a PodGroup of minMember = all pods; neither sets schedulerName. */}}

{{/* Name of a model's runtime: <release>-<model>. Usage: include "korean-llm.trainingRuntimeName" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.trainingRuntimeName" -}}
{{- include "korean-llm.modelName" . -}}
{{- end -}}

{{/* Env names that differ per stage: they go in TrainJob.spec.trainer.env; everything else stageEnv renders
(HF_HOME, the Secrets by reference) is the runtime's. */}}
{{- define "korean-llm.stageOnlyEnv" -}}STAGE MODEL_SIZE BASE_MODEL_PATH WANDB_PROJECT KOREAN_LLM_RESULT_DIR{{- end -}}

{{/* The env of "korean-llm.stageEnv" split in two. Usage: include "korean-llm.splitEnv" (merge (dict "part" "stage") $ctx) | fromYamlArray */}}
{{- define "korean-llm.splitEnv" -}}
{{- $own := splitList " " (include "korean-llm.stageOnlyEnv" .) -}}
{{- $out := list -}}
{{- range $e := (include "korean-llm.stageEnv" . | fromYamlArray) -}}
{{- if eq (has $e.name $own) (eq $.part "stage") -}}{{- $out = append $out $e -}}{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* Scheduler of the runtime's pods: the gang scheduler when a pod-group policy is on, else the GPU scheduler. */}}
{{- define "korean-llm.runtimeSchedulerName" -}}
{{- $v := .Values -}}
{{- $policy := $v.training.gangScheduling.policy -}}
{{- if and (ne $policy "none") $v.gpuScheduler.enabled -}}
{{- fail (printf "training.gangScheduling.policy=%s and gpuScheduler.enabled both pick the stage pods' scheduler: enable one" $policy) -}}
{{- end -}}
{{- if eq $policy "coscheduling" -}}{{- $v.training.gangScheduling.schedulerName | default "scheduler-plugins-scheduler" -}}
{{- else if eq $policy "volcano" -}}{{- $v.training.gangScheduling.schedulerName | default "volcano" -}}
{{- else if $v.gpuScheduler.enabled -}}{{- include "common.names.scheduler" . -}}
{{- end -}}
{{- end -}}

{{/* Largest backoffLimit among the model's enabled training stages: the runtime's JobSet maxRestarts (a TrainJob
cannot patch failurePolicy in v2.3, so it is one number per runtime). */}}
{{- define "korean-llm.runtimeMaxRestarts" -}}
{{- $max := 0 -}}
{{- $stages := splitList " " (include "korean-llm.enabledStages" .) -}}
{{- range $s := splitList " " (include "korean-llm.jobStages" .root) -}}
{{- if has $s $stages -}}
{{- $st := include "korean-llm.stage" (dict "root" $.root "model" $.model "stage" $s) | fromYaml -}}
{{- $max = max $max (int (default 0 $st.backoffLimit)) -}}
{{- end -}}
{{- end -}}
{{- $max -}}
{{- end -}}

{{/* The TrainingRuntime / ClusterTrainingRuntime of one model. Usage: include "korean-llm.trainingRuntime" (dict "root" $ "model" $m) */}}
{{- define "korean-llm.trainingRuntime" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $kind := $v.training.runtime.kind -}}
{{- $policy := $v.training.gangScheduling.policy -}}
{{- /* Model-level runtime config (runtimeDefaults < models[].config): the metrics port of the container. */ -}}
{{- $cfg := mergeOverwrite (deepCopy (default dict $v.runtimeDefaults)) (deepCopy (default dict .model.config)) -}}
{{- $port := int (default 0 ((get $cfg "metrics") | default dict).port) -}}
{{- $ctx := dict "root" $root "model" .model "stage" "" "cfg" $cfg -}}
{{- $scheduler := include "korean-llm.runtimeSchedulerName" $root -}}
apiVersion: trainer.kubeflow.org/v1alpha1
kind: {{ $kind }}
metadata:
  name: {{ include "korean-llm.trainingRuntimeName" . }}
  {{- if eq $kind "TrainingRuntime" }}
  namespace: {{ $root.Release.Namespace }}
  {{- end }}
  labels:
    {{- include "korean-llm.labels" (dict "root" $root "model" .model "component" "training-runtime") | nindent 4 }}
    # The Kubeflow SDK lists and uses only runtimes carrying this label (kubeflow 0.5.0,
    # kubeflow/trainer/backends/kubernetes/backend.py, __get_runtime_from_cr).
    trainer.kubeflow.org/framework: torch
spec:
  mlPolicy:
    # Defaults for a TrainJob that does not say; the chart's TrainJobs set trainer.numNodes and numProcPerNode.
    numNodes: 1
    torch: {}
  {{- if eq $policy "coscheduling" }}
  podGroupPolicy:
    coscheduling:
      scheduleTimeoutSeconds: {{ $v.training.gangScheduling.scheduleTimeoutSeconds | int }}
  {{- else if eq $policy "volcano" }}
  podGroupPolicy:
    volcano: {}
  {{- end }}
  template:
    {{- if and (eq $policy "volcano") $v.training.gangScheduling.volcanoQueue }}
    metadata:
      annotations:
        scheduling.volcano.sh/queue-name: {{ $v.training.gangScheduling.volcanoQueue | quote }}
    {{- end }}
    spec:
      # Same retry rules as the PyTorchJob path (restartPolicy ExitCode: 1-127 permanent, 128+ retried): an exit
      # 1-127 fails the Job through its podFailurePolicy and the JobSet at once (reason PodFailurePolicy); any other
      # failure restarts every pod of the stage (a torchrun group restarts as a whole), at most maxRestarts times.
      failurePolicy:
        maxRestarts: {{ include "korean-llm.runtimeMaxRestarts" . | int }}
        rules:
          - name: permanentExitCode
            action: FailJobSet
            onJobFailureReasons: [PodFailurePolicy]
      replicatedJobs:
        - name: node
          template:
            metadata:
              labels:
                trainer.kubeflow.org/trainjob-ancestor-step: trainer
            spec:
              backoffLimit: 0
              podFailurePolicy:
                rules:
                  # A pod lost to a drain, preemption or eviction is replaced without counting as a failure.
                  - action: Ignore
                    onPodConditions:
                      - type: DisruptionTarget
                  - action: FailJob
                    onExitCodes:
                      containerName: node
                      operator: In
                      values: [{{ join ", " (untilStep 1 128 1) }}]
              template:
                metadata:
                  labels:
                    {{- include "korean-llm.podLabels" (dict "root" $root "model" .model "component" "trainer") | nindent 20 }}
                spec:
                  restartPolicy: Never
                  automountServiceAccountToken: false
                  securityContext:
                    {{- include "common.security.pod" (dict "runAsUser" $v.podSecurity.runAsUser) | nindent 20 }}
                  {{- with $scheduler }}
                  schedulerName: {{ . }}
                  {{- end }}
                  {{- with $v.scheduling.priorityClassName }}
                  priorityClassName: {{ . }}
                  {{- end }}
                  {{- /* GPU nodes are tainted (nvidia.com/gpu): a TrainJob that names this runtime and patches
                  nothing (the Kubeflow SDK's, a short kubectl one) must still schedule there. The chart's own
                  TrainJobs restate a stage's tolerations in runtimePatches, which replace this list
                  (pkg/runtime/core/trainingruntime.go:251-281 at v2.3.0: a strategic merge patch into the
                  JobSetSpec, and a PodSpec's tolerations carry no patch strategy). A stage without GPUs
                  tolerates the taint as well but is never pinned to GPU nodes (gpuNodeSelector applies to GPU
                  stages only). */}}
                  {{- with $v.scheduling.gpuTolerations }}
                  tolerations:
                    {{- toYaml . | nindent 20 }}
                  {{- end }}
                  {{- with $v.imagePullSecrets }}
                  imagePullSecrets:
                    {{- range . }}
                    - name: {{ . }}
                    {{- end }}
                  {{- end }}
                  containers:
                    - name: node
                      image: {{ include "common.images.image" $v.image | quote }}
                      imagePullPolicy: {{ $v.image.pullPolicy }}
                      {{- with (include "korean-llm.splitEnv" (merge (dict "part" "runtime") $ctx) | fromYamlArray) }}
                      env:
                        {{- toYaml . | nindent 24 }}
                      {{- end }}
                      {{- if and (gt $port 0) (ne ((get $cfg "metrics")).enabled false) }}
                      ports:
                        - name: metrics
                          containerPort: {{ $port }}
                      {{- end }}
                      securityContext:
                        {{- include "common.security.container" (dict "readOnlyRootFilesystem" $v.podSecurity.readOnlyRootFilesystem) | nindent 24 }}
                      volumeMounts:
                        - name: config
                          mountPath: {{ $v.configMountPath }}
                          readOnly: true
                        - name: data
                          mountPath: /data
                        - name: output
                          mountPath: /output
                        {{- if $v.storage.hfCache.enabled }}
                        - name: hf-cache
                          mountPath: /cache/huggingface
                        {{- end }}
                        - name: tmp
                          mountPath: /tmp
                        - name: dshm
                          mountPath: /dev/shm
                  volumes:
                    {{- /* st.gpus=1: the runtime always carries the /dev/shm volume (NCCL and dataloader workers) */ -}}
                    {{- include "korean-llm.stageVolumes" (dict "root" $root "model" .model "st" (dict "gpus" 1)) | nindent 20 }}
{{- end -}}

{{/* The TrainJob backend of training steps (see _pytorchjob.tpl for the pair of helpers a backend provides).
The TrainJob of a training stage (the manifest of its Argo resource step): only what differs per stage.
Usage: include "korean-llm.trainjob.manifest" (dict "root" $ "model" $m "stage" "cpt" "st" $st "cfg" $cfg) */}}
{{- define "korean-llm.trainjob.resource" -}}trainjobs.trainer.kubeflow.org{{- end -}}

{{- define "korean-llm.trainjob.manifest" -}}
{{- $v := .root.Values -}}
{{- $nodes := int (default 1 .st.nodes) -}}
{{- $gpus := int (default 0 .st.gpus) -}}
{{- $sched := include "korean-llm.stageScheduling" . | fromYaml -}}
apiVersion: trainer.kubeflow.org/v1alpha1
kind: TrainJob
metadata:
  # <stage>-<model index>-<workflow uid>: an RFC 1035 label of at most 48 characters, so the JobSet's pods
  # (<name>-node-<job>-<pod>-<5 random>) stay within 63 too. With scheduling.kueueQueueName, Kueue's TrainJob
  # integration (framework trainer.kubeflow.org/trainjob) holds the job suspended until the LocalQueue admits
  # it; Trainer v2 restarts the activeDeadlineSeconds clock on resume (trainjob_controller.go:155-166).
  name: {{ include "korean-llm.jobName" . }}
  labels:
    {{- include "korean-llm.jobLabels" . | nindent 4 }}
spec:
  runtimeRef:
    apiGroup: trainer.kubeflow.org
    kind: {{ $v.training.runtime.kind }}
    name: {{ include "korean-llm.trainingRuntimeName" . }}
  # Counted from creation, or from the last resume out of suspension; exceeded: Failed, reason DeadlineExceeded,
  # and the JobSet is deleted, freeing its GPUs (pkg/controller/trainjob_controller.go:155-191 at v2.3.0).
  activeDeadlineSeconds: {{ .st.activeDeadlineSeconds | int64 }}
  trainer:
    command:
      {{- include "korean-llm.stageCommand" . | nindent 6 }}
    {{- with (include "korean-llm.splitEnv" (merge (dict "part" "stage") .) | fromYamlArray) }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    numNodes: {{ $nodes }}
    numProcPerNode: {{ max 1 $gpus }}
    resourcesPerNode:
      {{- include "korean-llm.resources" . | nindent 6 }}
  runtimePatches:
    - manager: korean-llm.io/chart
      trainingRuntimeSpec:
        template:
          spec:
            replicatedJobs:
              - name: node
                template:
                  spec:
                    template:
                      metadata:
                        {{- include "korean-llm.stagePodMetadata" . | nindent 24 }}
                      {{- $podPatch := dict -}}
                      {{- with $sched.nodeSelector }}{{- $_ := set $podPatch "nodeSelector" . -}}{{- end -}}
                      {{- with $sched.tolerations }}{{- $_ := set $podPatch "tolerations" . -}}{{- end -}}
                      {{- with $podPatch }}
                      spec:
                        {{- toYaml . | nindent 24 }}
                      {{- end }}
{{- end -}}

{{/* Argo resource-step conditions on a TrainJob (tests/chart/argo_conditions.py evaluates them as the executor
does, against tests/chart/status/trainjob.yaml). Argo v4.1.2 (workflow/executor/resource.go:200-306) parses each
condition as a Kubernetes label selector whose keys are gjson paths: a failureCondition fails the step when ANY
of its comma-separated requirements matches, a successCondition needs ALL of them. Keys must be label keys, so
gjson queries (#(type=="Failed")) are not possible; positions are.
- Failure: the Failed condition (Trainer copies the JobSet's Failed condition, jobset/jobset.go:454-457, or sets
  its own for DeadlineExceeded / an unsupported runtime, trainjob_controller.go:105-106,174). At most three
  condition types exist (Suspended, Complete, Failed: trainjob_types.go:56-65), so it sits at index 0, 1 or 2.
- Success: Complete is at index 0 without Kueue but index 1 after a Suspended condition, which no AND of
  per-index requirements can express; the child Job count Trainer copies beside it in the same status write
  (jobset/jobset.go:459-470) can: the runtime's only replicated job, `node`, has one Job (replicas 1), so
  succeeded >= 1 is the JobSet's success (default successPolicy All) that sets Complete. */}}
{{- define "korean-llm.trainjob.conditions" -}}
successCondition: status.jobsStatus.0.name == node, status.jobsStatus.0.succeeded > 0
failureCondition: status.conditions.0.type == Failed, status.conditions.1.type == Failed, status.conditions.2.type == Failed
{{- end -}}
