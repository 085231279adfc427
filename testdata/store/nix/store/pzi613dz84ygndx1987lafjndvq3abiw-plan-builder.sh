for o in $outputs; do
  eval "p=\$$o"
  /bin/mkdir -p "$p"
  /bin/echo "$name $o" > "$p/name"
  for i in $deps; do
    /bin/cat "$i/name" >> "$p/inputs"
  done
done
if [ -n "$sleep" ]; then /bin/sleep "$sleep"; fi
