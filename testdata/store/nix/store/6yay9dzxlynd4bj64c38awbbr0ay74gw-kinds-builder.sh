for o in $outputs; do eval "/bin/mkdir -p \$$o"; done
