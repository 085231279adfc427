# v2 of the system in explain/system.nix: libpng bumped, one word of
# coreutils' configureFlags and one line of nginx's postInstall changed,
# and a new derivation whose inputs are in both closures.
import ./explain/system.nix {
  libpngVersion = "1.6.40";
  coreutilsSelinux = true;
  nginxLogDir = "/var/log/nginx/access";
  extraTools = true;
}
