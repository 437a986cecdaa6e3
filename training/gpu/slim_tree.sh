#!/usr/bin/env bash
# The device tool sends the checkout's tracked files plus what `carry` names, 64 MiB in all, and
# the shipped artifacts alone are larger. `slim_tree.sh FAMILY on` takes what a training run does
# not read out of git's index (kept on disk, ignored through .git/info/exclude) so that the tree
# that travels is the code, FAMILY's checkpoint and .gpu/; `slim_tree.sh FAMILY off` puts it back.
# Commit nothing in between.
#   training/gpu/slim_tree.sh codec on; <device run>; training/gpu/slim_tree.sh codec off
set -euo pipefail
cd "$(dirname "$0")/../.."
FAMILY=$1; MODE=$2
EXCLUDE=.git/info/exclude
MARK="# slim_tree.sh"
case $MODE in
  on)
    paths=(artifacts benchmarks/results)
    for ckpt in checkpoints/*.pt; do [ "$ckpt" = "checkpoints/$FAMILY.pt" ] || paths+=("$ckpt"); done
    git rm -r -q --cached "${paths[@]}"
    for p in "${paths[@]}"; do echo "/$p $MARK" >> "$EXCLUDE"; done
    echo "untracked for the device run: ${paths[*]}; $(git ls-files | xargs du -ck 2>/dev/null | tail -1)" ;;
  off)
    git reset -q -- artifacts benchmarks/results checkpoints
    sed -i "/ $MARK\$/d" "$EXCLUDE"
    git status --short | head ;;
  *) echo "usage: $0 FAMILY on|off" >&2; exit 2 ;;
esac
