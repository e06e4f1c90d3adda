"""erpctl fleet prometheus-config: the Prometheus configuration of the fleet, generated from its inventory."""

from __future__ import annotations

import click

from ..fsutil import atomic_write_text
from ..remote import inventory, scrape
from .fleet_common import installation
from .options import emit, json_option, target_options


@click.command(name="prometheus-config")
@target_options
@json_option
@click.option("--inventory", "inventory_file", metavar="FILE",
              help="Ansible YAML inventory. Default: fleet/inventory.yml in the data directory. "
                   "[env ERPCTL_FLEET_INVENTORY]")
@click.option("--playbooks-dir", metavar="DIR", help="The Ansible project whose role defaults give the ports the "
                                                     "inventory leaves out. [env ERPCTL_FLEET_PLAYBOOKS_DIR]")
@click.option("--output", "-o", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the configuration there (atomically). Default: print it.")
@click.option("--alertmanager", default="127.0.0.1:9093", show_default=True, metavar="HOST:PORT",
              help="The Alertmanager Prometheus sends alerts to, or 'none'.")
@click.option("--metrics-token-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="File holding the metrics token ([monitoring] metrics_token of the app hosts), sent to the ERP's "
                   "and erpctl's /metrics.")
def prometheus_config(data_dir, database_url, inventory_file, playbooks_dir, output, alertmanager,
                      metrics_token_file):
    """Prometheus scrape jobs from the inventory: each app host's ERP and erpctl /metrics, the load
    balancer's HAProxy exporter.

    Each target is labelled instance=<inventory host> and role; the shipped rules and alerting come with them.
    """
    inst = installation(data_dir, database_url, inventory=inventory_file,
                        playbooks_dir=playbooks_dir)
    hosts = inventory.load(inst.get("fleet_inventory"))
    cfg = scrape.config(hosts, inst.get("fleet_playbooks_dir"), None if alertmanager == "none" else alertmanager,
                        metrics_token_file)
    text = scrape.dump(cfg)
    jobs = {sc["job_name"]: [s["labels"]["instance"] for s in sc["static_configs"]] for sc in cfg["scrape_configs"]}
    if output:
        atomic_write_text(output, text)
        emit({"output": output, "jobs": jobs}, f"wrote {output}: " + "; ".join(
            f"{job} {', '.join(names)}" for job, names in jobs.items()))
    else:
        emit({"config": cfg, "jobs": jobs}, text.rstrip("\n"))
