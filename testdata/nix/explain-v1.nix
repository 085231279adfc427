# v1 of the system in explain/system.nix; explain-v2.nix is the update.
import ./explain/system.nix {
  libpngVersion = "1.6.39";
  coreutilsSelinux = false;
  nginxLogDir = "/var/log/nginx";
  extraTools = false;
}
