"""More than one machine: the fleet's inventory (Ansible's YAML format), SSH to its hosts with strict
host-key checking (paramiko), and commands run on many hosts at once with a bound."""
