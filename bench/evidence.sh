#!/bin/bash
# Reproduce the README's "Does targeting pay?" figures: every benchmark, one after another.
# Each writes its JSON after every run and resumes where it stopped: run this again to continue.
# Hours on a 2-core CPU machine (see the README for what each took here).
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
LOOP=${LOOP:-loop}
run() { echo "=== $1 start $(date -u +%FT%TZ)"; shift; $LOOP bench efficiency "$@"; echo "=== end $(date -u +%FT%TZ)"; }
run banking77 --config configs/banking77.yaml --strategies none,all_labels,random,targeted,real,active \
    --seeds 0,1,2,3,4 --budgets 7000,14000,21000 --rounds 3
$LOOP bench labels --config configs/banking77.yaml  # label precision of what those runs accepted
run banking77-dev2000 --config configs/banking77.yaml --strategies none,all_labels --seeds 0,1,2,3,4 \
    --budgets 7000,14000,21000 --rounds 3 --set data.dev_size=2000 --out bench/results/efficiency-banking77-dev2000.json
run banking77-crossval --config configs/banking77.yaml --strategies crossval --seeds 0,1,2 \
    --budgets 7000,14000,21000 --rounds 3
# (one completion per prompt, the tweet default when these ran; the two variants below are paired with its targeted arm)
run default --config configs/default.yaml --strategies none,all_labels,random,targeted,real --seeds 0,1,2,3,4 \
    --budgets 8000,16000,24000 --rounds 3 --set generation.completions=1 \
    --out bench/results/efficiency-default-5seeds.json
$LOOP bench labels --config configs/default.yaml --result bench/results/efficiency-default-5seeds.json \
    --out bench/results/labels-default.json
T1="--config configs/default.yaml --strategies targeted --seeds 0,1,2,3,4 --budgets 8000,16000,24000 --rounds 3"
run default-n4p4 $T1 --set generation.completions=4 --set generation.targeted_requests=3 \
    --set generation.revise_requests=1 --out bench/results/efficiency-default-n4p4.json
$LOOP bench labels --config configs/default.yaml --result bench/results/efficiency-default-n4p4.json \
    --out bench/results/labels-default-n4p4.json
run default-n2 $T1 --set generation.completions=2 --out bench/results/efficiency-default-n2.json
run default-rp11 $T1 --set generation.completions=2 --set teacher.repetition_penalty=1.1 \
    --out bench/results/efficiency-default-rp11.json
# Eight samples per prompt, ten prompts a round (six targeted, four self-revisions), two completions each.
run default-s8 $T1 --set generation.samples_per_request=8 --set generation.targeted_requests=6 \
    --set generation.revise_requests=4 --set teacher.max_tokens=640 --out bench/results/efficiency-default-s8.json
run stackoverflow --config configs/stackoverflow.yaml --strategies none,all_labels,random,targeted,real --seeds 0,1,2 \
    --budgets 7000,14000,21000 --rounds 3
$LOOP bench labels --config configs/stackoverflow.yaml
# What the free label check (filters.label_check, on by default since) and several completions per prompt
# change on Banking77: targeted again, paired with the targeted runs above by seed. The runs above predate
# the check and the current self-revision prompt: to repeat them as they were, check out their commit.
run banking77-checked --config configs/banking77.yaml --strategies targeted --seeds 0,1,2,3,4 \
    --budgets 7000,14000,21000 --rounds 3 --set generation.completions=1 \
    --out bench/results/efficiency-banking77-checked.json
$LOOP bench labels --config configs/banking77.yaml --result bench/results/efficiency-banking77-checked.json \
    --out bench/results/labels-banking77-checked.json
run banking77-checked-n2 --config configs/banking77.yaml --strategies targeted --seeds 0,1,2,3,4 \
    --budgets 7000,14000,21000 --rounds 3 --set generation.completions=2 \
    --out bench/results/efficiency-banking77-checked-n2.json
$LOOP bench labels --config configs/banking77.yaml --result bench/results/efficiency-banking77-checked-n2.json \
    --out bench/results/labels-banking77-checked-n2.json
# Issue-20 options on Banking77 (with the label check and one completion, as at the time): minimal pairs and the
# follow-up boost, each paired by seed with a plain targeted run of the same commit.
B1="--config configs/banking77.yaml --strategies targeted --seeds 0,1,2,3,4 --budgets 7000,14000,21000 --rounds 3 \
    --set generation.completions=1"
run banking77-v4 $B1 --out bench/results/efficiency-banking77-v4.json
run banking77-pairs $B1 --set generation.minimal_pairs=true --out bench/results/efficiency-banking77-pairs.json
run banking77-followup $B1 --set generation.followup_boost=2 --out bench/results/efficiency-banking77-followup.json
# The label check's rule live: vote with an 80% share, paired with banking77-checked-n2 above (the default
# rule, either, and the same settings otherwise).
B2="--config configs/banking77.yaml --strategies targeted --seeds 0,1,2,3,4 --budgets 7000,14000,21000 --rounds 3"
run banking77-vote08 $B2 --set filters.label_check_rule=vote --set filters.label_check_share=0.8 \
    --out bench/results/efficiency-banking77-vote08.json
$LOOP bench labels --config configs/banking77.yaml --result bench/results/efficiency-banking77-vote08.json \
    --out bench/results/labels-banking77-vote08.json
run banking77-vote06 $B2 --set filters.label_check_rule=vote --set filters.label_check_share=0.6 \
    --out bench/results/efficiency-banking77-vote06.json
$LOOP bench labels --config configs/banking77.yaml --result bench/results/efficiency-banking77-vote06.json \
    --out bench/results/labels-banking77-vote06.json
# Four completions per prompt against the config's two.
run banking77-n4 $B2 --set generation.completions=4 --out bench/results/efficiency-banking77-n4.json
