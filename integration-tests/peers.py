"""Real identity providers for the tests, run on this machine on 127.0.0.1 only, each
stopped by the PID of the process the test started (see ../shared/PEERS.md)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a peer this test started, by its PID: TERM, then KILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Slapd:
    """OpenLDAP's slapd with an mdb database under a temp dir, on 127.0.0.1:PORT."""

    suffix = "dc=example,dc=edu"

    def __init__(self, port: int = 3890):
        if shutil.which("slapd") is None:
            raise RuntimeError("slapd is not installed (run-tests.sh installs it)")
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="hardway-slapd-"))
        self.admin_dn = f"cn=admin,{self.suffix}"
        self.admin_pw = "slapd-admin-pw"
        (self.dir / "db").mkdir()
        includes = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
        (self.dir / "slapd.conf").write_text(f"""{includes}
pidfile {self.dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{self.suffix}"
rootdn "{self.admin_dn}"
rootpw {self.admin_pw}
directory {self.dir}/db
""")
        self.proc = subprocess.Popen(
            ["slapd", "-f", str(self.dir / "slapd.conf"), "-h", f"ldap://127.0.0.1:{port}/",
             "-d", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        self.add(f"""dn: {self.suffix}
objectClass: dcObject
objectClass: organization
o: Example University
dc: example

dn: ou=people,{self.suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{self.suffix}
objectClass: organizationalUnit
ou: groups
""")

    def add(self, ldif: str) -> None:
        subprocess.run(["ldapadd", "-x", "-H", f"ldap://127.0.0.1:{self.port}/", "-D",
                        self.admin_dn, "-w", self.admin_pw], input=ldif, text=True,
                       check=True, capture_output=True)

    def add_user(self, uid: str, password: str) -> str:
        dn = f"uid={uid},ou=people,{self.suffix}"
        self.add(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                 f"userPassword: {password}\n")
        return dn

    def add_group(self, cn: str, members: list[str]) -> str:
        dn = f"cn={cn},ou=groups,{self.suffix}"
        lines = "".join(f"member: {m}\n" for m in members)
        self.add(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n{lines}")
        return dn

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """Debian's nginx terminating TLS on 127.0.0.1:PORT (self-signed) in front of hardway
    on 127.0.0.1:UPSTREAM, configured as docs/https.md tells admins (websocket upgrade)."""

    def __init__(self, port: int, upstream: int):
        if shutil.which("nginx") is None:
            raise RuntimeError("nginx is not installed (run-tests.sh installs nginx-light)")
        from hardway.tls import make_self_signed

        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="hardway-nginx-"))
        pair = make_self_signed(["localhost", "127.0.0.1"])
        (self.dir / "cert.pem").write_bytes(pair.cert_pem)
        (self.dir / "key.pem").write_bytes(pair.key_pem)
        d = self.dir
        (d / "nginx.conf").write_text(f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
            proxy_buffering off;
        }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
        except RuntimeError:
            self.stop()
            raise

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in
                       (self.dir / "error.log", self.dir / "access.log") if p.exists())

    def stop(self) -> None:
        stop_process(self.proc)  # the master; it stops its workers
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgreSQL:
    """A real PostgreSQL server inside a booted container (Debian's package), on
    127.0.0.1:``port`` (not 5432: a server on this machine may hold that), with a
    database ``hub`` owned by role ``hub``. The URL is written to a 0600 file that
    hub.db_url names (``file:``), never put on a command line."""

    def __init__(self, c, port: int = 5439, password: str = "hub-db-pw"):
        self.c, self.port, self.password = c, port, password
        self.url = f"postgresql://hub:{password}@127.0.0.1:{port}/hub"
        self.url_file = "/etc/hardway/db-url"

    def install(self) -> PostgreSQL:
        c = self.c
        c.run(["bash", "-c", "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
                             "apt-get install -y -q postgresql >/dev/null"], timeout=900)
        c.run(["bash", "-c", f"sed -i 's/^port = .*/port = {self.port}/' "
                             "/etc/postgresql/*/main/postgresql.conf && systemctl restart "
                             "postgresql"])
        self.sql(f"CREATE USER hub PASSWORD '{self.password}'", db="postgres")
        c.run(["runuser", "-u", "postgres", "--", "createdb", "-p", str(self.port), "-O",
               "hub", "hub"])
        c.path(self.url_file).write_text(self.url + "\n")
        c.run(["chmod", "600", self.url_file])
        return self

    def sql(self, query: str, db: str = "hub") -> str:
        """``query`` as the postgres superuser; its rows, one per line."""
        return self.c.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-p",
                           str(self.port), "-d", db, "-tAc", query]).stdout.strip()
