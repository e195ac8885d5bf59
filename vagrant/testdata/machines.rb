# Loads a Vagrantfile with Vagrant's own loader (no provider needs to be usable: no libvirt
# daemon, no VirtualBox) and prints, per machine, what the providers were configured with, as
# JSON: the libvirt provider's qemuargs (what vagrant-libvirt copies verbatim into the domain's
# <qemu:commandline>, create_domain.rb / domain.xml.erb), its networks, and the VirtualBox
# customizations as VirtualBox's customize step would pass them (to_s of each argument). With
# --fetch, it also fetches every VirtualBox pointer's URL (10.0.2.2 is the host's loopback as
# VirtualBox's NAT shows it) from the server the Vagrantfile starts, and returns the bodies.
#
# usage: ruby machines.rb DIR [--fetch]
require "json"
require "net/http"
require "vagrant"
require "vagrant-libvirt"

dir = ARGV.fetch(0)
fetch = ARGV.include?("--fetch")
env = Vagrant::Environment.new(cwd: dir, home_path: ENV.fetch("VAGRANT_HOME"))
out = {}
env.vagrantfile.machine_names.each do |name|
  m = {}
  lv = env.vagrantfile.machine_config(name, :libvirt, nil, nil, false)[:config]
  m["libvirt"] = {
    "box" => lv.vm.box,
    "qemuargs" => lv.vm.get_provider_config(:libvirt).qemu_args.map { |a| a[:value] },
    "networks" => lv.vm.networks.map { |type, opts| {"type" => type.to_s, "options" => opts} },
  }
  vb = env.vagrantfile.machine_config(name, :virtualbox, nil, nil, false)[:config]
  custom = vb.vm.get_provider_config(:virtualbox).customizations.map do |event, command|
    {"event" => event, "command" => command.map { |a| a == :id ? "<id>" : a.to_s }}
  end
  m["virtualbox"] = {
    "box" => vb.vm.box,
    "box_url" => vb.vm.box_url,
    "customizations" => custom,
    "networks" => vb.vm.networks.map { |type, opts| {"type" => type.to_s, "options" => opts} },
  }
  if fetch
    custom.each do |c|
      next unless c["command"][0] == "guestproperty" && c["command"][3] == "/Ignition/Config"
      url = JSON.parse(c["command"][4]).dig("ignition", "config", "replace", "source")
      m["virtualbox"]["served"] = Net::HTTP.get(URI(url.sub("//10.0.2.2:", "//127.0.0.1:")))
    end
  end
  out[name] = m
end
puts JSON.generate(out)
