#!/bin/bash
# Re-runs the README's CPU result tables (2-core CPU, real data in $HYPER_DATA_DIR), one job at a time.
#
#   HYPER_DATA_DIR=../shared/data bash experiments/cpu_results.sh "ptb 0" "ptb 1" "mnist 0 100" "cifar 0" throughput
#   HYPER_DATA_DIR=../shared/data bash experiments/cpu_results.sh "zinit 0" "handwriting 0" "translation 0"
#   python -m experiments.results_table runs/ptb/*      # then the tables
#
# Each job writes runs/<family>/<variant>_s<seed> and a log in runs/logs/.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p runs/logs

ptb() {  # seed [variants]: Table 3's cells at 256 units (hyper 64), 1500 steps (configs/ptb_char.py cpu_*)
  local seed=$1; shift
  for c in ${@:-cpu_lstm256 cpu_lstm300 cpu_ln_lstm256 cpu_hyperlstm256 cpu_ln_hyperlstm256}; do
    $PY launch.py --config=configs/ptb_char.py:$c --workdir=runs/ptb/${c}_s$seed --config.seed=$seed \
      > runs/logs/ptb_${c}_s$seed.log 2>&1
  done
}

mnist() {  # seed epochs [variants]: best validation checkpoint (evaluated every epoch; a rerun with more
           # epochs resumes the same workdir)
  local seed=$1 epochs=$2; shift 2
  for c in ${@:-conv hyper_conv}; do
    $PY launch.py --config=configs/mnist.py:$c --workdir=runs/mnist/${c}_s$seed --config.seed=$seed \
      --config.train.num_epochs=$epochs --config.eval.every_steps=55 --config.eval.patience=20 \
      --config.checkpoint.every_steps=275 >> runs/logs/mnist_${c}_s$seed.log 2>&1
  done
}

cifar() {  # seed: WRN 40-1 normal and hyper, a short budget of 200 steps (the JPEG copy here)
  for c in wrn40_1 hyper_wrn40_1; do
    $PY launch.py --config=configs/cifar10.py:$c --workdir=runs/cifar/${c}_s$1 --config.seed=$1 \
      --config.train.num_epochs=-1 --config.train.num_steps=200 --config.eval.every_steps=200 \
      --config.checkpoint.every_steps=100 --config.log.every_steps=20 > runs/logs/cifar_${c}_s$1.log 2>&1
  done
}

zinit() {  # seed [rows]: issue 15's 8 rows (N_z 4 / 16, reference / random_embedding z init), 1500 steps
  local seed=$1; shift
  local rows="cpu_hyperlstm256 cpu_hyperlstm256_nz16 cpu_hyperlstm256_randemb cpu_hyperlstm256_nz16_randemb"
  rows="$rows ${rows//cpu_hyperlstm256/cpu_ln_hyperlstm256}"
  for c in ${@:-$rows}; do
    $PY launch.py --config=configs/ptb_char.py:$c --workdir=runs/z/${c}_s$seed --config.seed=$seed \
      > runs/logs/z_${c}_s$seed.log 2>&1
  done
}

handwriting() {  # seed [cells]: Table 5's cells at 256 units (hyper 64) on UNIPEN lines, 500 steps,
                 # validation (every line, whole) every 250 steps, test of the best checkpoint
  local seed=$1; shift
  for c in ${@:-lstm ln_lstm hyperlstm ln_hyperlstm}; do
    $PY launch.py --config=configs/handwriting.py:cpu_${c}256 --workdir=runs/handwriting/cpu_${c}256_s$seed \
      --config.seed=$seed --config.train.num_steps=500 --config.eval.every_steps=250 \
      --config.checkpoint.every_steps=250 > runs/logs/handwriting_${c}_s$seed.log 2>&1
  done
}

translation() {  # seed [cells]: Table 6's cells on Tatoeba En->Fr at the CPU size (configs/translation.py
                 # cpu_*: 128 units, 2 + 2 layers, 1000 steps), test BLEU/chrF of the best checkpoint;
                 # seed 0 also scores Multi30k test 2016 and newstest2014
  local seed=$1; shift
  local extra=''
  [ "$seed" = 0 ] && extra='--config.eval.extra_test=newstest2014,multi30k'
  for c in ${@:-lstm ln_lstm hyperlstm ln_hyperlstm}; do
    $PY launch.py --config=configs/translation.py:cpu_$c --workdir=runs/translation/cpu_${c}_s$seed \
      --config.seed=$seed $extra > runs/logs/translation_${c}_s$seed.log 2>&1
  done
}

throughput() {  # the paper's PTB shape (batch 128, 1000 units, T 100) in the real trainer, 12 steps
  for c in lstm1000 ln_lstm1000 hyperlstm1000 ln_hyperlstm1000; do
    $PY launch.py --config=configs/ptb_char.py:$c --workdir=runs/throughput/$c --config.train.num_epochs=-1 \
      --config.train.num_steps=12 --config.log.every_steps=4 --config.eval.every_steps=1000 \
      --config.eval.max_batches=1 --config.checkpoint.every_steps=1000 --config.sample.length=0 \
      > runs/logs/throughput_$c.log 2>&1
  done
}

for job in "$@"; do
  echo "$(date +%T) start $job" >> runs/logs/queue.log
  eval "$job"
  echo "$(date +%T) end $job" >> runs/logs/queue.log
done
