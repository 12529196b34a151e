# reprofarm agent for Windows lab machines: install, update (run it again) or uninstall.
#
# In an elevated PowerShell (Windows PowerShell 5.1 or PowerShell 7):
#
#   $env:REPROFARM_TOKEN='<enrollment token>'; irm https://controller:8600/install.ps1 | iex
#
# With options (the "& {...}" form passes parameters through iex):
#
#   $env:REPROFARM_TOKEN='<token>'; iex "& {$(irm https://controller:8600/install.ps1)} -Pools windows-arm64"
#   iex "& {$(irm https://controller:8600/install.ps1)} -Uninstall"
#
# The controller serves this file with its own URL written in below. The file holds no
# secret: the enrollment token comes from $env:REPROFARM_TOKEN (never from a URL) or, when
# updating, from the config of the existing install.
#
# What it does (docs/windows.md in the reprofarm repository explains why):
#   1. finds Python 3.11+ or installs 3.12 (winget; else the python.org installer, whose
#      Authenticode signature must be the Python Software Foundation's)
#   2. makes $Root\tools, a virtual environment holding uv
#   3. downloads the wheels the controller lists (the agent and the reprofarm packages it
#      needs) and checks each sha256 and size
#   4. installs the agent's dependencies pinned by the release (uv pip --require-hashes),
#      then the wheels, into their own virtual environment, $Root\venvs\<version>, and
#      checks that the agent starts (--version, probe)
#   5. writes $Root\agent.env (api URL, token, the controller's release key, name, pools,
#      folders; only SYSTEM and Administrators can read $Root) and the pointers current
#      and known-good
#   6. registers the scheduled task "reprofarm-agent" (at startup, as SYSTEM, no logged-in
#      user needed) running $Root\run-agent.ps1, which runs the agent's supervisor; starts it
#   7. waits until the agent has registered with the controller
# Running it again updates: a new version is installed beside the old one, then switched to.
# -Uninstall stops and removes the task and the program; the agent's work folder (its
# identity and any results not yet delivered) stays unless -Purge is given.

param(
    [string]$Api = '',
    [string]$Name = '',
    [string[]]$Pools = @(),
    [string]$Root = '',
    [switch]$Uninstall,
    [switch]$Purge
)

$ReprofarmApiUrl = '__REPROFARM_API_URL__'
# The controller's release key (Ed25519, public): written into agent.env, where it stays;
# the agent installs only releases it signed.
$ReprofarmReleaseKey = '__REPROFARM_RELEASE_KEY__'
$ReprofarmTaskName = 'reprofarm-agent'
$ReprofarmPythonVersion = '3.12.10'
$ReprofarmVersionPattern = '^[0-9][0-9A-Za-z.+!_]{0,59}$'
$ReprofarmWheelPattern = '^reprofarm_[a-z]{1,30}-[0-9][0-9A-Za-z.+!_]{0,59}-py3-none-any\.whl$'

function Invoke-Native {
    # Run a program and fail on a non-zero exit code (which $ErrorActionPreference ignores).
    param([string]$What, [string]$Exe, [string[]]$Arguments)
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$What failed with exit code $LASTEXITCODE ($Exe $($Arguments -join ' '))"
    }
}

function Assert-Administrator {
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal($identity)
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'run this in an elevated PowerShell (Run as administrator)'
    }
}

function Get-NativeArchitecture {
    # The machine's own architecture, also from an x64 PowerShell emulated on ARM64.
    $key = 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
    $arch = (Get-ItemProperty -Path $key -Name PROCESSOR_ARCHITECTURE).PROCESSOR_ARCHITECTURE
    if ($arch -eq 'ARM64') { return 'arm64' }
    return 'amd64'
}

function Test-Python {
    param([string]$Exe)
    # Continue: under Stop, Windows PowerShell 5.1 turns a redirected stderr line into an error.
    $ErrorActionPreference = 'Continue'
    if (-not $Exe -or -not (Test-Path -LiteralPath $Exe)) { return $false }
    if ($Exe -like '*\WindowsApps\*') { return $false }  # the Microsoft Store stub
    $ok = & $Exe -c 'import sys, venv; print(sys.version_info >= (3, 11))' 2>$null
    return ($LASTEXITCODE -eq 0 -and "$ok".Trim() -eq 'True')
}

function Find-Python {
    # Machine-wide installs first: the task runs as SYSTEM, long after this session.
    $ErrorActionPreference = 'Continue'
    $candidates = @()
    foreach ($base in @($env:ProgramFiles, ${env:ProgramFiles(x86)})) {
        if ($base) {
            $found = Get-ChildItem -Path (Join-Path $base 'Python3*\python.exe') -ErrorAction SilentlyContinue |
                Sort-Object -Property FullName -Descending
            foreach ($f in $found) { $candidates += $f.FullName }
        }
    }
    $launcher = Get-Command py.exe -ErrorAction SilentlyContinue
    if ($launcher) {
        $fromLauncher = & $launcher.Source -3 -c 'import sys; print(sys.executable)' 2>$null
        if ($LASTEXITCODE -eq 0) { $candidates += "$fromLauncher".Trim() }
    }
    foreach ($command in @(Get-Command python.exe -All -ErrorAction SilentlyContinue)) {
        $candidates += $command.Source
    }
    foreach ($candidate in $candidates) {
        if (Test-Python $candidate) { return $candidate }
    }
    return $null
}

function Install-Python {
    # winget where it exists (Windows 10/11); Windows Server has none: python.org's installer.
    $winget = Get-Command winget.exe -ErrorAction SilentlyContinue
    if ($winget) {
        Write-Host "installing Python 3.12 with winget"
        & $winget.Source install --id Python.Python.3.12 --exact --scope machine --silent `
            --accept-package-agreements --accept-source-agreements --disable-interactivity
        if ($LASTEXITCODE -eq 0) { return }
        Write-Warning "winget failed with exit code $LASTEXITCODE; trying the python.org installer"
    }
    $arch = Get-NativeArchitecture
    $file = "python-$ReprofarmPythonVersion-$arch.exe"
    $url = "https://www.python.org/ftp/python/$ReprofarmPythonVersion/$file"
    $installer = Join-Path $env:TEMP $file
    Write-Host "downloading $url"
    Invoke-WebRequest -Uri $url -OutFile $installer -UseBasicParsing
    $signature = Get-AuthenticodeSignature -FilePath $installer
    if ($signature.Status -ne 'Valid' -or $signature.SignerCertificate.Subject -notmatch 'Python Software Foundation') {
        Remove-Item -LiteralPath $installer -Force
        throw "$file is not signed by the Python Software Foundation ($($signature.Status)); not running it"
    }
    $process = Start-Process -FilePath $installer -Wait -PassThru -ArgumentList @(
        '/quiet', 'InstallAllUsers=1', 'PrependPath=0', 'Include_test=0', 'Include_launcher=0')
    Remove-Item -LiteralPath $installer -Force
    if ($process.ExitCode -ne 0) { throw "the Python installer failed with exit code $($process.ExitCode)" }
}

function Read-AgentConfig {
    param([string]$Path)
    $config = [ordered]@{}
    if (Test-Path -LiteralPath $Path) {
        foreach ($line in Get-Content -LiteralPath $Path) {
            $trimmed = $line.Trim()
            if ($trimmed -eq '' -or $trimmed.StartsWith('#') -or -not $trimmed.Contains('=')) { continue }
            $at = $trimmed.IndexOf('=')
            $config[$trimmed.Substring(0, $at).Trim()] = $trimmed.Substring($at + 1).Trim()
        }
    }
    return $config
}

function Write-AgentConfig {
    param([string]$Path, $Config)
    $lines = @('# reprofarm agent configuration, written by install.ps1 (it holds the token).')
    foreach ($key in $Config.Keys) { $lines += "$key=$($Config[$key])" }
    [IO.File]::WriteAllLines($Path, [string[]]$lines)  # UTF-8 without a byte-order mark
}

function Write-Pointer {
    param([string]$Path, [string]$Version)
    [IO.File]::WriteAllText($Path, "$Version`n")
}

function Protect-Folder {
    # Only SYSTEM and Administrators may read the install: agent.env holds the token and
    # work\identity.json the machine's secret. SIDs, so that any display language works.
    param([string]$Path)
    # Files already inside get the inherited entries from the folder.
    Invoke-Native 'icacls' 'icacls.exe' @($Path, '/inheritance:r', '/grant:r',
        '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F', '/Q')
}

function Stop-Agent {
    param([string]$Root)
    $task = Get-ScheduledTask -TaskName $ReprofarmTaskName -ErrorAction SilentlyContinue
    if ($task) { Stop-ScheduledTask -TaskName $ReprofarmTaskName -ErrorAction SilentlyContinue }
    # Stopping the task ends its PowerShell; the supervisor and the agent it started may
    # outlive it. Anything running from the install folder goes: by its path, or by its
    # command line (a virtual environment's python.exe starts the base interpreter with
    # the script's path; hangtest runs from the cache folder).
    $prefix = ($Root.TrimEnd('\') + '\').ToLowerInvariant()
    for ($i = 0; $i -lt 20; $i++) {
        $running = @(Get-CimInstance -ClassName Win32_Process | Where-Object {
            $_.ProcessId -ne $PID -and (
                ($_.ExecutablePath -and $_.ExecutablePath.ToLowerInvariant().StartsWith($prefix)) -or
                ($_.CommandLine -and $_.CommandLine.ToLowerInvariant().Contains($prefix)))
        })
        if ($running.Count -eq 0) { return }
        foreach ($p in $running) { Stop-Process -Id $p.ProcessId -Force -ErrorAction SilentlyContinue }
        Start-Sleep -Milliseconds 500
    }
    throw "processes under $Root do not stop; stop them and run this again"
}

function Get-Release {
    param([string]$ApiUrl, [hashtable]$Headers)
    try {
        $release = Invoke-RestMethod -Uri "$ApiUrl/api/v1/agent/release" -Headers $Headers -UseBasicParsing
    } catch {
        throw "GET $ApiUrl/api/v1/agent/release failed: $($_.Exception.Message) (a 401 means the token is refused)"
    }
    if ("$($release.version)" -notmatch $ReprofarmVersionPattern) {
        throw "the controller's release version '$($release.version)' is not a version"
    }
    return $release
}

function Save-Wheels {
    # Download the release's wheels and check each against the sha256 and size listed.
    param([string]$ApiUrl, [hashtable]$Headers, $Release, [string]$Folder)
    New-Item -ItemType Directory -Force -Path $Folder | Out-Null
    $paths = @()
    foreach ($file in $Release.files) {
        if ("$($file.filename)" -notmatch $ReprofarmWheelPattern) {
            throw "the controller lists an unexpected file '$($file.filename)'"
        }
        $path = Join-Path $Folder $file.filename
        $part = "$path.part"
        Invoke-WebRequest -Uri "$ApiUrl/agent/wheels/$($file.filename)" -Headers $Headers `
            -OutFile $part -UseBasicParsing
        $sha256 = (Get-FileHash -LiteralPath $part -Algorithm SHA256).Hash.ToLowerInvariant()
        $size = (Get-Item -LiteralPath $part).Length
        if ($sha256 -ne $file.sha256 -or $size -ne [long]$file.bytes) {
            Remove-Item -LiteralPath $part -Force
            throw "$($file.filename): sha256 $sha256 ($size bytes); the controller listed $($file.sha256) ($($file.bytes) bytes)"
        }
        Move-Item -LiteralPath $part -Destination $path -Force
        Write-Host "  $($file.filename) sha256 $sha256 ok"
        $paths += $path
    }
    return $paths
}

function Install-Version {
    # A virtual environment of its own per version; ".ready" once the agent in it starts.
    # Third-party packages only as the release pins them (versions and sha256), then the
    # reprofarm wheels without dependencies: nothing unpinned comes from an index.
    param([string]$Root, [string]$Version, [string]$Python, [string[]]$Wheels, [string]$Requirements)
    $venv = Join-Path $Root "venvs\$Version"
    if (Test-Path -LiteralPath (Join-Path $venv '.ready')) { return }
    if (Test-Path -LiteralPath $venv) { Remove-Item -LiteralPath $venv -Recurse -Force }
    $uv = Join-Path $Root 'tools\Scripts\uv.exe'
    $venvPython = Join-Path $venv 'Scripts\python.exe'
    Invoke-Native 'uv venv' $uv @('venv', '--quiet', '--python', $Python, $venv)
    Invoke-Native 'uv pip install --require-hashes' $uv @('pip', 'install', '--quiet', '--python', $venvPython,
        '--require-hashes', '-r', $Requirements)
    Invoke-Native 'uv pip install' $uv (@('pip', 'install', '--quiet', '--python', $venvPython, '--no-deps') + $Wheels)
    $agent = Join-Path $venv 'Scripts\reprofarm-agent.exe'
    $said = & $agent --version
    if ($LASTEXITCODE -ne 0 -or "$said".Trim() -ne $Version) {
        throw "start check: reprofarm-agent --version said '$said' (exit $LASTEXITCODE), expected $Version"
    }
    & $agent probe --json | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "start check: reprofarm-agent probe failed (exit $LASTEXITCODE)" }
    [IO.File]::WriteAllText((Join-Path $venv '.ready'), $Version)
}

function Write-RunScript {
    # What the scheduled task runs. The supervisor comes from known-good (a version that
    # stayed up), so a broken new version cannot stop the supervisor itself from starting.
    param([string]$Path)
    $script = @'
# Written by install.ps1: the scheduled task "reprofarm-agent" runs this at startup as SYSTEM.
$root = $PSScriptRoot
while ($true) {
    $good = (Get-Content -Raw -LiteralPath (Join-Path $root 'known-good')).Trim()
    $supervisor = Join-Path $root "venvs\$good\Scripts\reprofarm-agent.exe"
    & $supervisor supervise --root $root
    $code = $LASTEXITCODE
    if ($code -eq 3) {
        # The controller refuses this agent's tokens: restarting cannot help. Make it seen.
        eventcreate.exe /L APPLICATION /T ERROR /SO reprofarm-agent /ID 3 /D "reprofarm agent stopped: the controller refuses its tokens. Re-run install.ps1 with a new enrollment token in REPROFARM_TOKEN. See $root\logs\agent.log" | Out-Null
        exit 3
    }
    $line = "$(Get-Date -Format o) run-agent.ps1: the supervisor exited with code $code; starting it again in 10s"
    Add-Content -LiteralPath (Join-Path $root 'logs\supervisor.log') -Value $line
    Start-Sleep -Seconds 10
}
'@
    [IO.File]::WriteAllText($Path, $script)
}

function Register-AgentTask {
    param([string]$Root)
    $powershell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
    $action = New-ScheduledTaskAction -Execute $powershell -WorkingDirectory $Root -Argument (
        '-NoProfile -NonInteractive -ExecutionPolicy Bypass -File "' + (Join-Path $Root 'run-agent.ps1') + '"')
    $trigger = New-ScheduledTaskTrigger -AtStartup
    $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    # No time limit (the default stops a task after 72 hours); restarts are the
    # supervisor's job, the task's own restart is a backstop for a failed launch.
    $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
        -StartWhenAvailable -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances IgnoreNew `
        -RestartCount 3 -RestartInterval (New-TimeSpan -Minutes 1)
    Register-ScheduledTask -TaskName $ReprofarmTaskName -Action $action -Trigger $trigger `
        -Principal $principal -Settings $settings -Force `
        -Description 'reprofarm lab agent (installed by install.ps1)' | Out-Null
}

function Wait-Registration {
    # The agent says "registered as agent N" in its log once the controller accepted it.
    param([string]$Root, [long]$LogOffset, [int]$TimeoutSeconds = 180)
    $log = Join-Path $Root 'logs\agent.log'
    $deadline = (Get-Date).AddSeconds($TimeoutSeconds)
    while ((Get-Date) -lt $deadline) {
        Start-Sleep -Seconds 2
        if (Test-Path -LiteralPath $log) {
            $stream = [IO.File]::Open($log, 'Open', 'Read', 'ReadWrite')
            try {
                [void]$stream.Seek([Math]::Min($LogOffset, $stream.Length), 'Begin')
                $text = (New-Object IO.StreamReader($stream)).ReadToEnd()
            } finally { $stream.Dispose() }
            $match = [regex]::Match($text, 'registered as agent \d+[^\r\n]*')
            if ($match.Success) { return $match.Value }
        }
        $state = (Get-ScheduledTask -TaskName $ReprofarmTaskName).State
        $info = Get-ScheduledTaskInfo -TaskName $ReprofarmTaskName
        if ("$state" -ne 'Running' -and $info.LastTaskResult -eq 3) {
            throw "the controller refused the token: give a new enrollment token in `$env:REPROFARM_TOKEN (see $log)"
        }
    }
    throw "the agent did not register within $TimeoutSeconds s; see $log and $(Join-Path $Root 'logs\supervisor.log')"
}

function Install-Agent {
    param([string]$Root, [string]$Api, [string]$Name, [string[]]$Pools)
    $configPath = Join-Path $Root 'agent.env'
    $config = Read-AgentConfig $configPath
    $token = $env:REPROFARM_TOKEN
    if (-not $token) { $token = $config['REPROFARM_TOKEN'] }
    if (-not $token) {
        throw 'set $env:REPROFARM_TOKEN to an enrollment token (reprofarm token create --role agent) first'
    }
    if (-not $Api) { $Api = $env:REPROFARM_API }
    if (-not $Api) { $Api = $config['REPROFARM_API'] }
    if (-not $Api) { $Api = $ReprofarmApiUrl }
    $Api = $Api.TrimEnd('/')
    if (-not $Name) { $Name = $env:REPROFARM_NAME }
    if (-not $Name) { $Name = $config['REPROFARM_AGENT_NAME'] }
    if (-not $Name) { $Name = $env:COMPUTERNAME }
    if ($Pools.Count -eq 0 -and $env:REPROFARM_POOLS) { $Pools = $env:REPROFARM_POOLS -split ',' }
    $poolsJson = $null
    if ($Pools.Count -gt 0) {
        $poolsJson = ConvertTo-Json -Compress -InputObject @($Pools | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    }

    New-Item -ItemType Directory -Force -Path $Root | Out-Null
    Protect-Folder $Root
    foreach ($folder in 'logs', 'work', 'cache', 'venvs', 'downloads') {
        New-Item -ItemType Directory -Force -Path (Join-Path $Root $folder) | Out-Null
    }

    $python = Find-Python
    if (-not $python) {
        Install-Python
        $python = Find-Python
        if (-not $python) { throw 'Python 3.11 or later is still not found after installing it' }
    }
    Write-Host "python: $python"

    $uv = Join-Path $Root 'tools\Scripts\uv.exe'
    if (-not (Test-Path -LiteralPath $uv)) {
        Invoke-Native 'python -m venv' $python @('-m', 'venv', (Join-Path $Root 'tools'))
        Invoke-Native 'pip install uv' (Join-Path $Root 'tools\Scripts\python.exe') @(
            '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', 'uv')
    }

    $headers = @{ Authorization = "Bearer $token" }
    $release = Get-Release $Api $headers
    $version = "$($release.version)"
    Write-Host "controller $Api serves agent $version"
    $downloads = Join-Path $Root "downloads\$version"
    $wheels = Save-Wheels $Api $headers $release $downloads
    $requirements = Join-Path $downloads 'requirements.txt'
    [IO.File]::WriteAllText($requirements, "$($release.requirements)")
    Install-Version $Root $version $python $wheels $requirements

    Stop-Agent $Root
    $config['REPROFARM_API'] = $Api
    $config['REPROFARM_TOKEN'] = $token
    $config['REPROFARM_RELEASE_PUBLIC_KEY'] = $ReprofarmReleaseKey
    $config['REPROFARM_AGENT_NAME'] = $Name
    if ($poolsJson) { $config['REPROFARM_POOLS'] = $poolsJson }
    $config['REPROFARM_WORK_DIR'] = Join-Path $Root 'work'
    $config['REPROFARM_CACHE_DIR'] = Join-Path $Root 'cache'
    $config['UV_CACHE_DIR'] = Join-Path $Root 'uv-cache'
    $config['UV_PYTHON_DOWNLOADS'] = 'never'
    if ($env:REPROFARM_UPDATE_CHECK_S) { $config['REPROFARM_UPDATE_CHECK_S'] = $env:REPROFARM_UPDATE_CHECK_S }
    Write-AgentConfig $configPath $config
    # An install by hand is the admin's choice: it is current and known-good, and any
    # pending trial or earlier refusal is forgotten.
    Write-Pointer (Join-Path $Root 'current') $version
    Write-Pointer (Join-Path $Root 'known-good') $version
    Remove-Item -LiteralPath (Join-Path $Root 'update.json') -Force -ErrorAction SilentlyContinue
    Write-RunScript (Join-Path $Root 'run-agent.ps1')

    $log = Join-Path $Root 'logs\agent.log'
    $offset = 0
    if (Test-Path -LiteralPath $log) { $offset = (Get-Item -LiteralPath $log).Length }
    Register-AgentTask $Root
    Start-ScheduledTask -TaskName $ReprofarmTaskName
    Write-Host "scheduled task $ReprofarmTaskName started; waiting for the agent to register"
    $registered = Wait-Registration $Root $offset
    Write-Host "reprofarm agent $version ($Name): $registered"
    Write-Host "logs: $(Join-Path $Root 'logs'); update: run this again; remove: -Uninstall"
}

function Uninstall-Agent {
    param([string]$Root, [bool]$Purge)
    Stop-Agent $Root
    if (Get-ScheduledTask -TaskName $ReprofarmTaskName -ErrorAction SilentlyContinue) {
        Unregister-ScheduledTask -TaskName $ReprofarmTaskName -Confirm:$false
    }
    if (-not (Test-Path -LiteralPath $Root)) {
        Write-Host "reprofarm agent removed (nothing was installed in $Root)"
        return
    }
    if ($Purge) {
        Remove-Item -LiteralPath $Root -Recurse -Force
        Write-Host "reprofarm agent removed, with its data ($Root)"
        return
    }
    Get-ChildItem -LiteralPath $Root -Force | Where-Object { $_.Name -ne 'work' } |
        Remove-Item -Recurse -Force
    Write-Host "reprofarm agent removed; its identity and undelivered results stay in $(Join-Path $Root 'work') (-Purge removes them)"
}

function Invoke-ReprofarmInstall {
    param([string]$Api, [string]$Name, [string[]]$Pools, [string]$Root, [bool]$Uninstall, [bool]$Purge)
    # Preferences set here stay in this function: iex runs the script in the caller's session.
    $ErrorActionPreference = 'Stop'
    $ProgressPreference = 'SilentlyContinue'  # Invoke-WebRequest is slow with a progress bar
    Set-StrictMode -Version 2.0
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
    Assert-Administrator
    if (-not $Root) { $Root = Join-Path $env:ProgramData 'reprofarm' }
    $saved = @{ UV_CACHE_DIR = $env:UV_CACHE_DIR; UV_PYTHON_DOWNLOADS = $env:UV_PYTHON_DOWNLOADS }
    $env:UV_CACHE_DIR = Join-Path $Root 'uv-cache'
    $env:UV_PYTHON_DOWNLOADS = 'never'
    try {
        if ($Uninstall) { Uninstall-Agent $Root $Purge } else { Install-Agent $Root $Api $Name $Pools }
    } finally {
        $env:UV_CACHE_DIR = $saved.UV_CACHE_DIR
        $env:UV_PYTHON_DOWNLOADS = $saved.UV_PYTHON_DOWNLOADS
    }
}

# No "exit" anywhere: under "irm | iex" it would close the admin's PowerShell window.
Invoke-ReprofarmInstall -Api $Api -Name $Name -Pools $Pools -Root $Root -Uninstall $Uninstall.IsPresent -Purge $Purge.IsPresent
