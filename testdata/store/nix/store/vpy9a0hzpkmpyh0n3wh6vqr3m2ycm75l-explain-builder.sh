for o in $outputs; do
  eval "p=\$$o"
  /bin/mkdir -p "$p"
  /bin/echo "$name" > "$p/name"
done
